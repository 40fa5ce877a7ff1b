"""FLANet on a dataset of your own: a folder of images and masks (flaseg/data/folder.py).

  python -m flaseg.main --config=configs/fla_folder.py --workdir=runs/mine \
      --config.data.root=/data/mine

`root` holds classes.json, images/{train,val}/ and masks/{train,val}/ (README "Your own
images and data"). A template to copy: ResNet-50 (deep stem, OS 8) with FLANet's head and
losses, crop 512, batch 8, SGD lr 1e-2 poly for 20k iterations, whole-image evaluation
(`--config.eval.mode=slide` for images much larger than the crop), the number of classes
from classes.json. `:smoke` keeps the folder but shrinks the network and the run (a few
steps on 64x64 crops): `--config=configs/fla_folder.py:smoke --config.data.root=DIR`.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  c.data.name = "folder"
  c.data.root = ""                   # --config.data.root=DIR
  c.data.train_split = "train"
  c.data.val_split = "val"
  c.data.crop_size = (512, 512)
  c.data.scale_range = (0.5, 2.0)
  c.model.num_classes = 0            # from classes.json
  c.model.head = "fla"
  c.model.backbone.depth = 50
  c.model.backbone.stem = "deep"
  c.model.backbone.output_stride = 8
  c.loss.weights = {"out": 1.0, "aux1": 0.4, "aux2": 0.4}
  c.optim.lr = 1e-2
  c.train.steps = 20000
  c.train.batch_size = 8
  c.train.log_every = 50
  c.train.eval_every = 2000
  c.checkpoint.every = 1000
  c.eval.mode = "whole"
  c.eval.crop_size = (512, 512)      # windows of --config.eval.mode=slide
  c.eval.stride = (341, 341)
  if arg.smoke:
    config_lib.apply_smoke(c)
    c.data.name = "folder"           # apply_smoke switches to synthetic data: keep the folder
    c.data.crop_size = (64, 64)
  return c
