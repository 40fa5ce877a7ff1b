"""FLANet on PASCAL Context (59 classes, background ignored; 60 with context_60): the paper's
recipe with its 520 crop for the datasets other than Cityscapes (Song et al., AAAI 2022).

  python -m flaseg.main --config=configs/fla_pascal_context.py --workdir=runs/fla_context \
      --config.data.root=/data/context  # holds VOCdevkit/VOC2010 (mmseg's converter's layout)

Deep-stem ResNet-101 at output stride 8, crop 520, batch 8, SGD lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4, 240 epochs of 4,998 images = 149,940 iterations (the paper's text; mmseg's
Context schedule is --config.train.steps=80000). `--config.data.context_60=True` trains and
evaluates the 60 classes with background (num_classes follows the dataset).
Evaluation on 'val' (5,105 images) at the original size, multi-scale (0.5-1.75) + flip over
520x520 windows. `:smoke` shrinks it to a seconds-long run on synthetic data.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  config_lib.flanet_cityscapes_768(c)
  c.model.head = "fla"
  c.data.name = "pascal_context"
  c.data.root = "data/context"
  c.data.train_split = "train"
  c.data.val_split = "val"
  c.data.context_60 = False          # True: 60 classes, background included
  c.data.crop_size = (520, 520)
  c.data.eval_resize = (0, 0)        # evaluate at the original size
  c.data.skip_corrupt = False
  c.model.num_classes = 0           # the dataset's: 59, or 60 with context_60
  c.train.steps = 149940
  c.checkpoint.every = 5000
  c.eval.update(dict(mode="slide", crop_size=(520, 520), stride=(346, 346),
                     scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True))
  if arg.smoke:
    config_lib.apply_smoke(c)
  return c
