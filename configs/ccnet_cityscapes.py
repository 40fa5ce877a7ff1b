"""CCNet (mmseg CCHead, criss-cross attention x2) on Cityscapes: mmseg's R-50-D8 769 80k recipe.

  python -m flaseg.main --config=configs/ccnet_cityscapes.py --workdir=runs/ccnet_cityscapes \
      --config.data.root=/data/cityscapes

The recipe is `config_lib.mmseg_recipe`; its layer3 aux FCN head has weight 0.4.
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.29 / 81.08 (attention-heads.md §1.4).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.mmseg_recipe, "ccnet",
                         dict(channels=512, recurrence=2, aux_channels=256))
  return config_lib.apply_smoke(c) if arg.smoke else c
