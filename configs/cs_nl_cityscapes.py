"""CS NL (FLANet's ablation block, `heads/channel_nl.py`) on Cityscapes, FLANet's recipe.

  python -m flaseg.main --config=configs/cs_nl_cityscapes.py \
      --workdir=runs/cs_nl_cityscapes --config.data.root=/data/cityscapes

FLANet head with the FLA block replaced by a CS NL block (Channel NL then Spatial NL, DANet
CAM and PAM in series); deep-stem ResNet-101 at output stride 8, crop 768, batch 8, SGD lr
1e-2 poly 0.9, 89,250 iterations (FLANet's 240 epochs).
Paper (FLANet Table 3, ResNet-50, 768x768, Cityscapes val): +CS NL 77.4 / 78.2 mIoU
(SS / MS+F), 113.56 GFLOPs, 1378 MB. Set `--config.model.backbone.depth=50` for that setting.
Aux weights 0.4 as the FLANet config (not released by the authors).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.flanet_recipe, "cs_nl")
  return config_lib.apply_smoke(c) if arg.smoke else c
