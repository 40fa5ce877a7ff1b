"""FCN on HRNetV2-W48 (mmseg `fcn_hr48_4xb4-160k_ade20k-512x512`, the
`fcn_hr48_512x512_160k_ade20k` of mmseg 0.x) on ADE20K (150 classes).

  python -m flaseg.main --config=configs/fcn_hrnet48_ade20k.py \
      --workdir=runs/fcn_hrnet48_ade20k --config.data.root=/data/ade \
      --config.init.backbone=pretrained/hrnetv2_w48   # python -m flaseg.convert --source=hrnet

The network of configs/fcn_hrnet48_cityscapes.py with 150 classes. Recipe (mmseg
schedule_160k + ade20k): crop 512x512, random scales 0.5-2.0 (mmseg scales relative to a
2048x512 keep-ratio resize, flaseg's pipeline relative to the original image: a deviation
where images are far from short side 512), batch 16 (4 GPUs x 4), SGD lr 0.01 poly 0.9 down
to 1e-4, momentum 0.9, wd 5e-4, 160k iterations, CE averaged over all pixels, whole-image
test at short side 512 (long side at most 2048). Reference mIoU (ADE20K val, single scale /
ms+flip): 42.02 / 43.86 (mmseg configs/hrnet/README.md and metafile.yaml, HRNetV2p-W48
512x512 160k).
"""
import importlib.util
import os

from flaseg import config_lib


def _cityscapes_config():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fcn_hrnet48_cityscapes.py")
  spec = importlib.util.spec_from_file_location("fcn_hrnet48_cityscapes", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.ade20k, config_lib.mmseg_recipe, "fcn")
  c = _cityscapes_config().hrnet_fcn(c)
  c.data.crop_size = (512, 512)
  c.data.scale_range = (0.5, 2.0)
  c.train.steps = 160000
  c.train.batch_size = 16
  c.checkpoint.every = 16000
  return config_lib.apply_smoke(c) if arg.smoke else c
