"""DNLNet (mmseg DNLHead, disentangled non-local) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/dnl_cityscapes.py --workdir=runs/dnl_cityscapes \
      --config.data.root=/data/cityscapes

ResNetV1c-50 (deep 3x3 stem 32-32-64, contract_dilation) at output stride 8, SyncBN, crop
769x769, batch 8 (mmseg 4xb2), SGD lr 0.01 momentum 0.9 wd 5e-4, poly 0.9 down to 1e-4 per
iteration, 80k iterations, CE averaged over all pixels (avg_non_ignore=False), align_corners=True,
slide test with 769 windows at stride 513 (attention-heads.md §1.2-§1.3).
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.36 / 80.70 (attention-heads.md §1.4).
`:smoke` shrinks it to a seconds-long run on synthetic data.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  c.data.name = "cityscapes"
  c.data.root = "data/cityscapes"
  c.data.crop_size = (769, 769)
  c.data.scale_range = (0.5, 2.0)
  c.model.head = "dnl"
  c.model.head_kwargs = dict(channels=512, reduction=2, use_scale=True, temperature=0.05,
                             aux_channels=256)
  c.model.num_classes = 19
  c.model.align_corners = True
  c.model.backbone.depth = 50
  c.model.backbone.stem = "v1c"
  c.model.backbone.output_stride = 8
  c.model.backbone.contract_dilation = True
  c.model.backbone.multi_grid = None
  c.loss.weights = {"out": 1.0, "aux": 0.4}
  c.loss.avg_non_ignore = False
  c.optim.lr = 0.01
  c.optim.end_lr = 1e-4
  c.optim.poly_power = 0.9
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.train.steps = 80000
  c.train.batch_size = 8
  c.checkpoint.every = 4000
  c.eval.mode = "slide"
  c.eval.crop_size = (769, 769)
  c.eval.stride = (513, 513)
  c.eval.scales = (1.0,)
  c.eval.flip = False
  if arg.smoke:
    config_lib.apply_smoke(c)
  return c
