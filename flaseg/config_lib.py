"""Config defaults, the shared `smoke` shrink, and loading a config file by path.

Every `configs/*.py` builds on `base_config()` and exposes `get_config(arg)`; `arg` is a comma
list such as 'smoke' or 'smoke,head=nl' (see `parse_arg`).
"""
import importlib.util
import os

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic"      # a key of flaseg.data.DATASETS
  c.data.root = ""               # dataset folder (real datasets)
  c.data.train_split = "train"
  c.data.val_split = "val"
  c.data.ignore_label = 255
  c.data.crop_size = (512, 512)  # (H, W) of training crops
  c.data.scale_range = (0.5, 2.0)
  c.data.flip = True
  c.data.color_jitter = 0.25
  c.data.num_threads = 2
  c.data.skip_corrupt = False    # True: drop unreadable files with a warning instead of failing
  c.data.eval_resize = (0, 0)    # (short, long) side resize of non-training splits (ADE20K)
  c.data.context_60 = False      # PASCAL Context: 60 classes instead of 59
  # Built-in synthetic street scenes (flaseg.data.synthetic).
  c.data.synthetic = ml_collections.ConfigDict(
      dict(num_train=2000, num_val=100, height=96, width=128))

  c.model = ml_collections.ConfigDict()
  c.model.head = "fla"
  c.model.head_kwargs = ml_collections.ConfigDict()
  c.model.num_classes = 19
  c.model.align_corners = True
  c.model.dtype = "float32"      # compute dtype; parameters stay float32
  c.model.backbone = ml_collections.ConfigDict(dict(
      depth=101, stem="deep", output_stride=8, contract_dilation=False, multi_grid=None,
      avg_down=False, width=64))

  c.loss = ml_collections.ConfigDict()
  c.loss.weights = ml_collections.ConfigDict({"out": 1.0})
  c.loss.ignore_label = 255
  c.loss.avg_non_ignore = True   # False: mmseg's mean over all pixels
  c.loss.ohem = "none"           # 'none' | 'attanet' | 'ccnet'
  c.loss.ohem_outputs = "all"    # 'all' or a tuple of output names
  c.loss.ohem_thresh = 0.7
  c.loss.ohem_min_kept = 100000  # over the global batch

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"
  c.optim.lr = 1e-2
  c.optim.end_lr = 0.0
  c.optim.poly_power = 0.9
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.no_decay_bn_bias = False
  c.optim.warmup = "none"        # 'none' | 'linear' | 'exp'
  c.optim.warmup_steps = 0
  c.optim.warmup_ratio = 0.1     # linear warm-up starts at lr * ratio
  c.optim.warmup_start = 1e-5    # exponential warm-up starts here
  c.optim.lr_mult = ml_collections.ConfigDict()  # {regex on param path: multiplier}

  c.train = ml_collections.ConfigDict()
  c.train.steps = 80000
  c.train.batch_size = 8         # global batch, divisible by the device count
  c.train.log_every = 50
  c.train.eval_every = 0         # 0: evaluate only at the end

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1000
  c.checkpoint.max_to_keep = 2

  c.eval = ml_collections.ConfigDict()
  c.eval.mode = "whole"          # 'whole' | 'slide'
  c.eval.scales = (1.0,)
  c.eval.flip = False
  c.eval.crop_size = (512, 512)  # sliding window
  c.eval.stride = (341, 341)
  c.eval.batch_size = 0          # 0: one image per device
  c.eval.num_images = 0          # 0: the whole split
  c.eval.save_images = 4         # coloured predictions written to workdir/predictions
  c.eval.export_dir = ""         # predictions in the benchmark's submission format (flaseg.export)

  c.init = ml_collections.ConfigDict(dict(backbone="", checkpoint=""))
  return c


def flanet_cityscapes_768(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """FLANet's Cityscapes recipe (AAAI 2022, Implementation Details), shared by its ablation
  heads: deep-stem ResNet-101 at output stride 8, crop 768, batch 8, SGD lr 1e-2 poly 0.9,
  momentum 0.9, wd 5e-4, 240 epochs of 2975 images = 89,250 iterations, multi-scale + flip
  sliding-window test; main + 0.4 x (aux1 + aux2) (aux weights not released; CCNet lineage)."""
  c.data.name = "cityscapes"
  c.data.root = "data/cityscapes"
  c.data.crop_size = (768, 768)
  c.model.num_classes = 19
  c.model.align_corners = True
  c.model.backbone.update(dict(depth=101, stem="deep", output_stride=8))
  c.loss.weights = {"out": 1.0, "aux1": 0.4, "aux2": 0.4}
  c.optim.update(dict(lr=1e-2, poly_power=0.9, momentum=0.9, weight_decay=5e-4))
  c.train.steps = 89250
  c.train.batch_size = 8
  c.checkpoint.every = 2000
  c.eval.update(dict(mode="slide", crop_size=(768, 768), stride=(512, 512),
                     scales=(0.75, 1.0, 1.25, 1.5, 1.75), flip=True))
  return c


def mmseg_cityscapes_769(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """mmseg's Cityscapes 769x769 80k recipe for R-50-D8 heads (attention-heads.md §1.2-1.3):
  ResNetV1c-50 (deep stem 32-32-64, contract_dilation) at output stride 8, crop 769, batch 8
  (4 GPUs x 2), SGD lr 0.01 poly 0.9 down to 1e-4, wd 5e-4, 80k iterations, CE averaged over
  all pixels (avg_non_ignore=False), align_corners=True, slide test 769 at stride 513."""
  c.data.name = "cityscapes"
  c.data.root = "data/cityscapes"
  c.data.crop_size = (769, 769)
  c.data.scale_range = (0.5, 2.0)
  c.model.num_classes = 19
  c.model.align_corners = True
  c.model.backbone.update(dict(depth=50, stem="v1c", output_stride=8, contract_dilation=True,
                               multi_grid=None))
  c.loss.avg_non_ignore = False
  c.optim.update(dict(lr=0.01, end_lr=1e-4, poly_power=0.9, momentum=0.9, weight_decay=5e-4))
  c.train.steps = 80000
  c.train.batch_size = 8
  c.checkpoint.every = 4000
  c.eval.update(dict(mode="slide", crop_size=(769, 769), stride=(513, 513), scales=(1.0,),
                     flip=False))
  return c


def parse_arg(arg: str, **defaults) -> ml_collections.ConfigDict:
  """'smoke,head=nl' -> {'smoke': True, 'head': 'nl'} over `defaults` (big_vision style)."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in out:
      raise ValueError(f"config arg {key!r}: known args are {sorted(out)}")
    out[key] = True if not value else type(out[key])(value) if out[key] is not None else value
  return out


def apply_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks any config to a run that finishes in well under a minute on a laptop CPU: tiny
  backbone and head widths, synthetic data, small crops, a few steps."""
  c.data.name = "synthetic"
  c.data.root = ""
  c.data.synthetic = ml_collections.ConfigDict(dict(num_train=64, num_val=8, height=48, width=64))
  c.data.crop_size = (32, 48)
  c.data.num_threads = 1
  c.model.num_classes = 0        # 0: taken from the dataset
  c.model.backbone.depth = 18 if c.model.backbone.depth in (18, 34) else 50
  c.model.backbone.width = 8
  if "channels" in c.model.head_kwargs or c.model.head in ("fla", "fcn"):
    c.model.head_kwargs.channels = 16
  if "aux_channels" in c.model.head_kwargs or c.model.head == "fla":
    c.model.head_kwargs.aux_channels = 8
  c.loss.ohem_min_kept = 256
  c.optim.warmup_steps = min(c.optim.warmup_steps, 2)
  c.train.steps = 6
  c.train.batch_size = 8
  c.train.log_every = 2
  c.train.eval_every = 0
  c.checkpoint.every = 3
  c.eval.crop_size = (32, 32)
  c.eval.stride = (24, 24)
  c.eval.batch_size = 0
  c.eval.num_images = 8
  c.eval.save_images = 2
  return c


def load(path_with_arg: str) -> ml_collections.ConfigDict:
  """`load('configs/quickstart.py:smoke')`: the config a `--config=` flag would give."""
  path, _, arg = path_with_arg.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file not found: {path}")
  spec = importlib.util.spec_from_file_location("flaseg_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
