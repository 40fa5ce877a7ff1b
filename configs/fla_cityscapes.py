"""FLANet on Cityscapes, the paper's recipe (Song et al., AAAI 2022, Implementation Details).

  python -m flaseg.main --config=configs/fla_cityscapes.py --workdir=runs/fla_cityscapes \
      --config.data.root=/data/cityscapes

Deep-stem ResNet-101 at output stride 8, crop 768, batch 8, SGD lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4, 240 epochs of 2975 images = 89,250 iterations, SyncBN, multi-scale + flip test.
Paper: 81.3 / 82.2 mIoU (val, SS / MS+F, R101; Table 2), 83.0 on test. The aux weights (0.4)
are not released with the official code; 0.4 is the CCNet-lineage default.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.flanet_recipe, "fla")
  return config_lib.apply_smoke(c) if arg.smoke else c
