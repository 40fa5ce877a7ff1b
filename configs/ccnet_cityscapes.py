"""CCNet (mmseg CCHead, criss-cross attention x2) on Cityscapes: mmseg's R-50-D8 769 80k recipe.

  python -m flaseg.main --config=configs/ccnet_cityscapes.py --workdir=runs/ccnet_cityscapes \
      --config.data.root=/data/cityscapes

ResNetV1c-50 (deep 3x3 stem 32-32-64, contract_dilation) at output stride 8, SyncBN, crop
769x769, batch 8 (mmseg 4xb2), SGD lr 0.01 momentum 0.9 wd 5e-4, poly 0.9 down to 1e-4 per
iteration, 80k iterations, CE averaged over all pixels (avg_non_ignore=False), align_corners=True,
slide test with 769 windows at stride 513 (attention-heads.md §1.2-§1.3).
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.29 / 81.08 (attention-heads.md §1.4).
`:smoke` shrinks it to a seconds-long run on synthetic data.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  config_lib.mmseg_cityscapes_769(c)
  c.model.head = "ccnet"
  c.model.head_kwargs = dict(channels=512, recurrence=2, aux_channels=256)
  c.loss.weights = {"out": 1.0, "aux": 0.4}
  if arg.smoke:
    config_lib.apply_smoke(c)
  return c
