"""CCNet (mmseg CCHead, criss-cross attention x2) on Cityscapes: mmseg's R-50-D8 769 80k recipe.

  python -m flaseg.main --config=configs/ccnet_cityscapes.py --workdir=runs/ccnet_cityscapes \
      --config.data.root=/data/cityscapes

Reference mIoU (Cityscapes val, single scale / ms+flip): 79.29 / 81.08 (attention-heads.md §1.4).
"""
from flaseg import config_lib

get_config = config_lib.mmseg_cityscapes(
    "ccnet", dict(channels=512, recurrence=2, aux_channels=256))
