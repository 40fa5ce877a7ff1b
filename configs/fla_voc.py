"""FLANet on PASCAL VOC 2012 with SBD's augmented training set (21 classes): the paper's
recipe with its 520 crop for the datasets other than Cityscapes (Song et al., AAAI 2022).

  python -m flaseg.main --config=configs/fla_voc.py --workdir=runs/fla_voc \
      --config.data.root=/data/voc    # holds VOCdevkit/VOC2012

Deep-stem ResNet-101 at output stride 8, crop 520, batch 8, SGD lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4, 240 epochs of the 10,582 'trainaug' images = 317,460 iterations (the paper's
text; mmseg's VOC-aug schedule is --config.train.steps=40000). Labels 0-20, 255 on object
borders (ignored). Evaluation on 'val' (1,449 images) at the original size, multi-scale
(0.5-1.75) + flip over 520x520 windows. Paper: 87.9 mIoU on VOC test (R101, with COCO
pre-training; export the test split with --config.data.val_split=test
--config.eval.export_dir=DIR). `:smoke` shrinks it to a seconds-long run on synthetic data.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  config_lib.flanet_cityscapes_768(c)
  c.model.head = "fla"
  c.data.name = "voc"
  c.data.root = "data/voc"
  c.data.train_split = "trainaug"    # SegmentationClassAug (SBD); mmseg's converter: 'aug'
  c.data.val_split = "val"
  c.data.crop_size = (520, 520)
  c.data.eval_resize = (0, 0)        # evaluate at the original size
  c.data.skip_corrupt = False
  c.model.num_classes = 21
  c.train.steps = 317460
  c.checkpoint.every = 5000
  c.eval.update(dict(mode="slide", crop_size=(520, 520), stride=(346, 346),
                     scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True))
  if arg.smoke:
    config_lib.apply_smoke(c)
  return c
