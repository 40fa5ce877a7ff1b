"""FLANet on ShuffleNetV2 x1.0 (Cityscapes): FLANet's recipe (configs/fla_cityscapes.py) with
torchvision's `shufflenet_v2_x1_0` (flaseg/models/shufflenet.py) in place of ResNet-101.

  python -m flaseg.convert --source=torchvision --checkpoint=shufflenetv2_x1-5666bf0f80.pth \
      --config=configs/fla_shufflenet_cityscapes.py --out=pretrained/shufflenet_v2_x1_0_os8
  python -m flaseg.main --config=configs/fla_shufflenet_cityscapes.py \
      --workdir=runs/fla_shufflenet_cityscapes --config.data.root=/data/cityscapes \
      --config.init.backbone=pretrained/shufflenet_v2_x1_0_os8

Output stride 8 as FLANet uses its backbones: stage3 / stage4 keep stride 1 and dilate their
3x3 depthwise convs by 2 / 4 (flaseg's reading; the paper gives no details). The FLA head is
FLANet's as released (two 3x3 ConvBNReLU -> 512 on c5, FLA, concat with c5) on c5 = conv5
(1024 channels, as in configs/attanet_shufflenet_cityscapes.py), aux outputs on c3 = stage2
(116) and c4 = stage3 (232). Inferred: FLANet on ShuffleNetV2 is not released and the paper
gives neither the attachment nor the head width for it; 18.51M parameters at 19 classes, of
which 17.26M in the head (the paper gives no count). Paper (FLANet Table 2, Cityscapes val,
SS / MS+F): baseline 69.2 / 70.8, +FLA 74.7 / 76.3.
"""
import ml_collections

from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.flanet_recipe, "fla")
  c.model.backbone = ml_collections.ConfigDict(dict(
      name="shufflenet_v2", width_mult=1.0, output_stride=8, conv5=True))
  return config_lib.apply_smoke(c) if arg.smoke else c
