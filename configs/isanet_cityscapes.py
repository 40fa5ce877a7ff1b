"""ISANet (mmseg ISAHead) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/isanet_cityscapes.py --workdir=runs/isanet_cityscapes \
      --config.data.root=/data/cityscapes

Reference mIoU (Cityscapes val, single scale / ms+flip): 79.29 / 80.53 (attention-heads.md §1.4).
"""
from flaseg import config_lib

get_config = config_lib.mmseg_cityscapes(
    "isanet", dict(channels=512, isa_channels=256, down_factor=(8, 8), aux_channels=256))
