"""AttaNet on DF2 (Cityscapes): AttaNet's own recipe (configs/attanet_cityscapes.py) with the
DF2 backbone of "Partial Order Pruning" (flaseg/models/dfnet.py) in place of ResNet-18.

  python -m flaseg.main --config=configs/attanet_df2_cityscapes.py \
      --workdir=runs/attanet_df2_cityscapes --config.data.root=/data/cityscapes \
      --config.init.backbone=pretrained/df2   # python -m flaseg.convert --source=dfnet
                                              #   --checkpoint=df2_imagenet.pth (SFSegNets)

AttaNet's head reads c3/c4/c5 = DF2's stage2_2 (1/8, 128), stage3_2 (1/16, 256) and
stage4_2 (1/32, 512), the places of ResNet-18's layer2..4: inferred, the paper does not
say how AttaNet attaches to DF2 (no official code). Paper (AttaNet Table 4, Cityscapes val):
DF2 72.5 -> 80.0 mIoU, 18.96M -> 20.08M params; 79.9 test at 71 FPS (README; presumably DF2).
"""
import ml_collections

from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, realtime=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.attanet_recipe, "attanet")
  c.model.backbone = ml_collections.ConfigDict(dict(name="dfnet", variant="df2", width=64))
  if arg.realtime:  # AttaNet's real-time protocol: 512x1024 inside the model
    config_lib.realtime_eval(c)
  return config_lib.apply_smoke(c) if arg.smoke else c
