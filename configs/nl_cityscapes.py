"""NonLocal (mmseg NLHead + mmcv NonLocal2d) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/nl_cityscapes.py --workdir=runs/nl_cityscapes \
      --config.data.root=/data/cityscapes

Reference mIoU (Cityscapes val, single scale / ms+flip): 79.05 / 80.68 (attention-heads.md §1.4).
"""
from flaseg import config_lib

get_config = config_lib.mmseg_cityscapes(
    "nl", dict(channels=512, reduction=2, use_scale=True, aux_channels=256))
