"""DNLNet (mmseg DNLHead, disentangled non-local) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/dnl_cityscapes.py --workdir=runs/dnl_cityscapes \
      --config.data.root=/data/cityscapes

The recipe is `config_lib.mmseg_recipe`; its layer3 aux FCN head has weight 0.4.
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.36 / 80.70 (attention-heads.md §1.4).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.mmseg_recipe, "dnl",
                         dict(channels=512, reduction=2, use_scale=True, temperature=0.05,
                              aux_channels=256))
  return config_lib.apply_smoke(c) if arg.smoke else c
