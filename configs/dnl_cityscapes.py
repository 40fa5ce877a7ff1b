"""DNLNet (mmseg DNLHead, disentangled non-local) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/dnl_cityscapes.py --workdir=runs/dnl_cityscapes \
      --config.data.root=/data/cityscapes

Reference mIoU (Cityscapes val, single scale / ms+flip): 79.36 / 80.70 (attention-heads.md §1.4).
"""
from flaseg import config_lib

get_config = config_lib.mmseg_cityscapes(
    "dnl", dict(channels=512, reduction=2, use_scale=True, temperature=0.05, aux_channels=256))
