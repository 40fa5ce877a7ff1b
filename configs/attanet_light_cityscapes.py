"""AttaNet's light model (songqi-github/AttaNet light.py + AttaNet_light.py) on Cityscapes.

  python -m flaseg.main --config=configs/attanet_light_cityscapes.py \
      --workdir=runs/attanet_light_cityscapes --config.data.root=/data/cityscapes

The eight-layer light backbone (flaseg/models/attanet_light.py, no ImageNet pretraining) and
its head (heads/attanet_light.py: AFM and SAM at 1/8, 64 channels), with AttaNet's own recipe
(configs/attanet_cityscapes.py: the official train.py is the same for both models).
Paper: 70.1 mIoU Cityscapes test at 180 FPS (AttaNet Table 1; GTX 1080Ti, 1024x2048 resized
to 512x1024 in the model); the released val checkpoint (BaiduYun, now gone) scored 70.6.
Converts with `python -m flaseg.convert --source=attanet_light` (whole model).
"""
import ml_collections

from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, realtime=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.attanet_recipe, "attanet_light")
  c.model.head_kwargs = dict(channels=64, qk_channels=64, out_channels=64, aux_channels=64)
  c.model.backbone = ml_collections.ConfigDict(dict(name="attanet_light", width=32))
  if arg.realtime:  # the paper's 70.1 / 180 FPS: 512x1024 inside the model
    config_lib.realtime_eval(c)
  return config_lib.apply_smoke(c) if arg.smoke else c
