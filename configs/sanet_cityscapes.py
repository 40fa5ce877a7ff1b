"""SANet (Zhong et al., CVPR 2020; `heads/sanet.py`) on Cityscapes.

  python -m flaseg.main --config=configs/sanet_cityscapes.py \
      --workdir=runs/sanet_cityscapes --config.data.root=/data/cityscapes

The paper trains a dilated ResNet-101 (output stride 8) on PASCAL Context (lr 1e-3, batch 16,
40 epochs) and VOC; it has no Cityscapes recipe. This config uses the backbone of the paper's
code base (PyTorch-Encoding: deep stem, first block of a dilated stage at half dilation) with
the common Cityscapes recipe (crop 769, batch 8, lr 1e-2 poly 0.9, 80k iterations, slide test).
Loss: out 1, se (class-presence BCE) alpha = 0.2, aux beta = 0.8 -- recalled from the paper's
Fig. 4, unverified. Paper: 53.0 mIoU PASCAL Context (R101, 59 classes), 83.2 VOC (no COCO).
`:smoke` shrinks it to a seconds-long run on synthetic data.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  c.data.name = "cityscapes"
  c.data.root = "data/cityscapes"
  c.data.crop_size = (769, 769)
  c.model.head = "sanet"
  c.model.num_classes = 19
  c.model.align_corners = True
  c.model.backbone.depth = 101
  c.model.backbone.stem = "deep"
  c.model.backbone.output_stride = 8
  c.model.backbone.contract_dilation = True
  c.loss.weights = {"out": 1.0, "se": 0.2, "aux": 0.8}
  c.optim.lr = 1e-2
  c.train.steps = 80000
  c.train.batch_size = 8
  c.checkpoint.every = 2000
  c.eval.mode = "slide"
  c.eval.crop_size = (769, 769)
  c.eval.stride = (513, 513)
  if arg.smoke:
    config_lib.apply_smoke(c)
    c.model.head_kwargs.aux_channels = 8
  return c
