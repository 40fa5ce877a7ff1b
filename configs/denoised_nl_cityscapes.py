"""Denoised NL (Song et al., TNNLS 2023; `heads/denoised_nl.py`) on Cityscapes.

  python -m flaseg.main --config=configs/denoised_nl_cityscapes.py \
      --workdir=runs/denoised_nl_cityscapes --config.data.root=/data/cityscapes

Deep-stem ResNet-101 at output stride 8 with layer4 multi-grid dilations (4, 8, 16), as the
official model.py. The training recipe is not released; FLANet's (same authors) is used: crop
768, batch 8, SGD lr 1e-2 poly 0.9, 89,250 iterations, aux weights 0.4 (unverified).
Reported (official README): 83.5 mIoU on Cityscapes (test), 46.69 on ADE20K.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.flanet_recipe, "denoised_nl")
  c.model.backbone.multi_grid = (4, 8, 16)
  return config_lib.apply_smoke(c) if arg.smoke else c
