"""EMANet (mmseg EMAHead) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/emanet_cityscapes.py --workdir=runs/emanet_cityscapes \
      --config.data.root=/data/cityscapes

The EM bases and the frozen ema_mid_conv live in the 'ema' collection.
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.33 / 80.49 (attention-heads.md §1.4).
"""
from flaseg import config_lib

get_config = config_lib.mmseg_cityscapes(
    "emanet", dict(channels=256, ema_channels=512, num_bases=64, num_stages=3, momentum=0.1,
                  aux_channels=256))
