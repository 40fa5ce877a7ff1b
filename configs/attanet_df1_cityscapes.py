"""AttaNet on DF1 (Cityscapes): AttaNet's own recipe (configs/attanet_cityscapes.py) with the
DF1 backbone of "Partial Order Pruning" (flaseg/models/dfnet.py) in place of ResNet-18.

  python -m flaseg.main --config=configs/attanet_df1_cityscapes.py \
      --workdir=runs/attanet_df1_cityscapes --config.data.root=/data/cityscapes \
      --config.init.backbone=pretrained/df1   # python -m flaseg.convert --source=dfnet
                                              #   --checkpoint=df1_imagenet.pth (SFSegNets)

AttaNet's head reads c3/c4/c5 = DF1's stage2 (1/8, 64), stage3 (1/16, 128) and stage5
(1/32, 512) (dfnet.py itself returns stage3, stage4, stage5: no 1/8 map). Inferred: the
paper does not say how AttaNet attaches to DF1 (no official code). Paper (AttaNet Table 4,
Cityscapes val): DF1 70.3 -> 78.0 mIoU, 9.34M -> 10.43M params.
"""
import ml_collections

from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, realtime=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.attanet_recipe, "attanet")
  c.model.backbone = ml_collections.ConfigDict(dict(name="dfnet", variant="df1", width=64))
  if arg.realtime:  # AttaNet's real-time protocol: 512x1024 inside the model
    config_lib.realtime_eval(c)
  return config_lib.apply_smoke(c) if arg.smoke else c
