"""FCN on HRNetV2-W48 (mmseg `fcn_hr48_4xb2-80k_cityscapes-512x1024`, the
`fcn_hr48_512x1024_80k_cityscapes` of mmseg 0.x) on Cityscapes.

  python -m flaseg.main --config=configs/fcn_hrnet48_cityscapes.py \
      --workdir=runs/fcn_hrnet48_cityscapes --config.data.root=/data/cityscapes \
      --config.init.backbone=pretrained/hrnetv2_w48   # python -m flaseg.convert --source=hrnet

Network (mmseg configs/_base_/models/fcn_hr18.py with W48 widths): HRNetV2-W48 (48/96/192/384
channels at 1/4..1/32), its four branches resized bilinearly (align_corners=False) to 1/4 and
concatenated (the `resize_concat` neck, 720 channels), then FCNHead with one 1x1 ConvBNReLU
720 -> 720, no concat, no dropout (dropout_ratio=-1), 1x1 -> 19. No auxiliary head.
Recipe (mmseg schedule_80k + cityscapes 512x1024): crop 512x1024, scales 0.5-2.0 of
2048x1024, batch 8 (4 GPUs x 2), SGD lr 0.01 poly 0.9 down to 1e-4, momentum 0.9, wd 5e-4,
80k iterations, CE averaged over all pixels (mmseg avg_non_ignore=False), whole-image test
at 1024x2048. ImageNet init: mmseg's open-mmlab://msra/hrnetv2_w48 or HRNet's own ImageNet file (the
same names), converted with --source=hrnet (or mmseg).
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.93 / 80.72 (mmseg
configs/hrnet/README.md and metafile.yaml, HRNetV2p-W48 512x1024 80k).
"""
import ml_collections

from flaseg import config_lib


def hrnet_fcn(c, width: int = 48):
  """mmseg's fcn_hr* network (HRNetV2-W`width`, resize_concat, 1x1 FCNHead) on `c`, with
  mmseg's whole-image single-scale test. `:smoke` shrinks it with HRNet.SMOKE_FIELDS."""
  c.model.backbone = ml_collections.ConfigDict(dict(name="hrnet", width=width))
  c.model.neck = "resize_concat"
  c.model.align_corners = False
  c.model.head = "fcn"
  c.model.head_kwargs = dict(channels=15 * width, num_convs=1, concat_input=False, kernel=1,
                             dropout=0.0, in_key="concat")
  c.loss.weights = {"out": 1.0}
  c.eval.mode = "whole"
  c.eval.scales = (1.0,)
  c.eval.flip = False
  return c


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.mmseg_recipe, "fcn")
  c = hrnet_fcn(c)
  c.data.crop_size = (512, 1024)
  c.data.scale_range = (0.5, 2.0)
  c.data.eval_resize = (0, 0)  # mmseg cityscapes.py's test Resize (2048, 1024): the image size
  c.checkpoint.every = 8000
  return config_lib.apply_smoke(c) if arg.smoke else c
