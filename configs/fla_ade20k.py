"""FLANet on ADE20K (SceneParsing, 150 classes): the paper's recipe with its 520 crop for the
datasets other than Cityscapes (Song et al., AAAI 2022, Implementation Details).

  python -m flaseg.main --config=configs/fla_ade20k.py --workdir=runs/fla_ade20k \
      --config.data.root=/data/ade    # holds ADEChallengeData2016/{images,annotations}

Deep-stem ResNet-101 at output stride 8, crop 520, batch 8, SGD lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4, 240 epochs of 20,210 images = 606,300 iterations (the paper's text; mmseg's
ADE20K schedule is --config.train.steps=160000). Label 0 ('other') is ignored and class k is
stored as k + 1. Evaluation follows mmseg's ADE20K protocol: validation images resized to
short side 512 (long side at most 2048), then multi-scale (0.5-1.75) + flip over 520x520
windows; mIoU is computed at that resized resolution. Paper: 46.68 mIoU (val, R101).
`:smoke` shrinks it to a seconds-long run on synthetic data.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  config_lib.flanet_cityscapes_768(c)
  c.model.head = "fla"
  c.data.name = "ade20k"
  c.data.root = "data/ade"
  c.data.train_split = "train"       # images/training
  c.data.val_split = "val"           # images/validation
  c.data.crop_size = (520, 520)
  c.data.eval_resize = (512, 2048)   # (short side, longest long side) of evaluated images
  c.data.skip_corrupt = False
  c.model.num_classes = 150
  c.train.steps = 606300
  c.checkpoint.every = 5000
  c.eval.update(dict(mode="slide", crop_size=(520, 520), stride=(346, 346),
                     scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True))
  if arg.smoke:
    config_lib.apply_smoke(c)
  return c
