"""FLANet's ablations (Song et al., AAAI 2022, Tables 2 and 3) on Cityscapes: FLANet's head and
recipe (configs/fla_cityscapes.py) with the FLA block swapped (`heads/fla_ablation.py`).

  python -m flaseg.main --config=configs/fla_ablation.py:block=cs_nl \
      --workdir=runs/ablation_cs_nl --config.data.root=/data/cityscapes
  python -m flaseg.main --config=configs/fla_ablation.py:block=none,backbone=resnet18 \
      --workdir=runs/ablation_r18_baseline --config.data.root=/data/cityscapes

Args: `block` = none | channel_nl | spatial_nl | dual_nl | cs_nl | ema | rcca | fla (default
fla); `backbone` = resnet18 | resnet50 (default: Table 3's) | resnet101 | shufflenet
(ShuffleNetV2 x1.0 as configs/fla_shufflenet_cityscapes.py); `smoke`.
Deep-stem ResNet at output stride 8 (the official FLANet backbone), crop 768, batch 8, SGD lr
1e-2 poly 0.9, momentum 0.9, wd 5e-4, 240 epochs of 2975 images = 89,250 iterations, SyncBN,
aux 0.4 + 0.4 (not released), multi-scale + flip test (SS: --config.eval.scales=1.0
--config.eval.flip=False).

Paper, Cityscapes val mIoU SS / MS+F. Table 3 (ResNet-50; added GFLOPs / MB at 768x768):
none 72.8 / 74.1; ema 76.4 / 77.1 (13.91, 98); channel_nl 75.6 / 76.9 (9.66, 40); rcca
76.7 / 77.8 (16.18, 174); spatial_nl 76.3 / 77.6 (103.90, 1320); dual_nl 77.1 / 78.0 (113.56,
1378); cs_nl 77.4 / 78.2 (113.56, 1378); fla 78.9 / 79.7 (19.37, 436); flaseg's counts:
`python scripts/cost.py`. Table 2 (none / fla): shufflenet 69.2 / 70.8 and 74.7 / 76.3;
resnet18 71.3 / 72.5 and 76.5 / 78.1; resnet50 72.8 / 74.1 and 78.9 / 79.7; resnet101
75.6 / 76.9 and 81.3 / 82.2.
Not from the paper (it gives no layers for the non-FLA blocks): each is its attention core and
one 3x3 ConvBNReLU, the FLA block's skeleton; the baseline keeps that conv; Spatial NL is
DANet's PAM (q/k 64); Dual NL sums Channel NL and Spatial NL; EMA and RCCA are mmseg's units.
"""
import ml_collections

from flaseg import config_lib
from flaseg.errors import ConfigError
from flaseg.models.heads.fla_ablation import BLOCKS

BACKBONES = ("resnet18", "resnet50", "resnet101", "shufflenet")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, block="fla", backbone="resnet50")
  if arg.block not in BLOCKS:
    raise ConfigError(f"configs/fla_ablation.py: block={arg.block!r}; choose one of {BLOCKS}")
  if arg.backbone not in BACKBONES:
    raise ConfigError(f"configs/fla_ablation.py: backbone={arg.backbone!r}; choose one of "
                      f"{BACKBONES}")
  c = config_lib.network(config_lib.cityscapes, config_lib.flanet_recipe, "fla_ablation",
                         dict(block_type=arg.block))
  if arg.backbone == "shufflenet":
    c.model.backbone = ml_collections.ConfigDict(dict(
        name="shufflenet_v2", width_mult=1.0, output_stride=8, conv5=True))
  else:
    c.model.backbone.depth = int(arg.backbone[len("resnet"):])
  return config_lib.apply_smoke(c) if arg.smoke else c
