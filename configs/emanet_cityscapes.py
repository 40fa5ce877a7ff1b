"""EMANet (mmseg EMAHead) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/emanet_cityscapes.py --workdir=runs/emanet_cityscapes \
      --config.data.root=/data/cityscapes

The recipe is `config_lib.mmseg_recipe`; its layer3 aux FCN head has weight 0.4.
The EM bases and the frozen ema_mid_conv live in the 'ema' collection.
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.33 / 80.49 (attention-heads.md §1.4).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.mmseg_recipe, "emanet",
                         dict(channels=256, ema_channels=512, num_bases=64, num_stages=3,
                              momentum=0.1, aux_channels=256))
  return config_lib.apply_smoke(c) if arg.smoke else c
