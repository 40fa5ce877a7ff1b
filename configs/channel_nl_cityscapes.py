"""Channel NL (FLANet's ablation block, `heads/channel_nl.py`) on Cityscapes, FLANet's recipe.

  python -m flaseg.main --config=configs/channel_nl_cityscapes.py \
      --workdir=runs/channel_nl_cityscapes --config.data.root=/data/cityscapes

FLANet head with the FLA block replaced by a Channel NL block; deep-stem ResNet-101 at output
stride 8, crop 768, batch 8, SGD lr 1e-2 poly 0.9, 89,250 iterations (FLANet's 240 epochs).
Paper (FLANet Table 3, ResNet-50, 768x768, Cityscapes val): +Channel NL 75.6 / 76.9 mIoU
(SS / MS+F), 9.66 GFLOPs, 40 MB. Set `--config.model.backbone.depth=50` for that setting.
Aux weights 0.4 as the FLANet config (not released by the authors).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.flanet_recipe, "channel_nl")
  return config_lib.apply_smoke(c) if arg.smoke else c
