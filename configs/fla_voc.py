"""FLANet on PASCAL VOC 2012 with SBD's augmented training set (21 classes): the paper's
recipe with its 520 crop for the datasets other than Cityscapes (Song et al., AAAI 2022).

  python -m flaseg.main --config=configs/fla_voc.py --workdir=runs/fla_voc \
      --config.data.root=/data/voc    # holds VOCdevkit/VOC2012

Deep-stem ResNet-101 at output stride 8, crop 520, batch 8, SGD lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4, 240 epochs of the 10,582 'trainaug' images = 317,460 iterations (the paper's
text; mmseg's VOC-aug schedule is --config.train.steps=40000). Labels 0-20, 255 on object
borders (ignored). Evaluation on 'val' (1,449 images) at the original size, multi-scale
(0.5-1.75) + flip over 520x520 windows. Paper (FLANet Table 5): 87.9 mIoU on VOC test (R101,
ImageNet pre-training only: the table marks FLANet as trained without the COCO-pretrained model
other entries use); export the test split with --config.data.val_split=test
--config.eval.export_dir=DIR. """
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.voc, config_lib.flanet_recipe, "fla")
  c.checkpoint.every = 5000
  return config_lib.apply_smoke(c) if arg.smoke else c
