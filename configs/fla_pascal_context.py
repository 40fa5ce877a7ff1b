"""FLANet on PASCAL Context (59 classes, background ignored; 60 with context_60): flaseg's own
experiment. FLANet (Song et al., AAAI 2022) reports no PASCAL Context result; this config
applies the paper's general recipe (its 520 crop "for other datasets") to Context.

  python -m flaseg.main --config=configs/fla_pascal_context.py --workdir=runs/fla_context \
      --config.data.root=/data/context  # holds VOCdevkit/VOC2010 (mmseg's converter's layout)

Deep-stem ResNet-101 at output stride 8, crop 520, batch 8, SGD lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4, 240 epochs of 4,998 images = 149,940 iterations (the paper's text; mmseg's
Context schedule is --config.train.steps=80000). `--config.data.context_60=True` trains and
evaluates the 60 classes with background (num_classes follows the dataset).
Evaluation on 'val' (5,105 images) at the original size, multi-scale (0.5-1.75) + flip over
520x520 windows. """
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.pascal_context, config_lib.flanet_recipe, "fla")
  c.checkpoint.every = 5000
  return config_lib.apply_smoke(c) if arg.smoke else c
