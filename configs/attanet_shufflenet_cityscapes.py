"""AttaNet on ShuffleNetV2 x1.0 (Cityscapes): AttaNet's own recipe (configs/attanet_cityscapes.py)
with torchvision's `shufflenet_v2_x1_0` (flaseg/models/shufflenet.py) in place of ResNet-18.

  python -m flaseg.convert --source=torchvision --checkpoint=shufflenetv2_x1-5666bf0f80.pth \
      --config=configs/attanet_shufflenet_cityscapes.py --out=pretrained/shufflenet_v2_x1_0
  python -m flaseg.main --config=configs/attanet_shufflenet_cityscapes.py \
      --workdir=runs/attanet_shufflenet_cityscapes --config.data.root=/data/cityscapes \
      --config.init.backbone=pretrained/shufflenet_v2_x1_0

Undilated (output stride 32, like AttaNet-R18); AttaNet's head reads c3 = stage2 (1/8, 116),
c4 = stage3 (1/16, 232) and c5 = conv5 (1/32, 1024). Inferred: AttaNet on ShuffleNetV2 is not
released and the paper does not say where the head attaches; with conv5 the network has
3.49M parameters at 19 classes (3.34M without the two training-only auxiliary outputs),
against 3.31M in the paper (without conv5: 2.29M / 2.15M). ImageNet-pretrained ("only
ShuffleNetV2 and ResNet are pretrained on ImageNet"). Paper (AttaNet Table 4, Cityscapes
val): 67.7 -> 76.0 mIoU, 2.55M -> 3.31M params, 12.10 -> 12.59 GFLOPs.
"""
import ml_collections

from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.attanet_recipe, "attanet")
  c.model.backbone = ml_collections.ConfigDict(dict(
      name="shufflenet_v2", width_mult=1.0, output_stride=32, conv5=True))
  return config_lib.apply_smoke(c) if arg.smoke else c
