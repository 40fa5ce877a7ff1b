"""AttaNet (Song et al., AAAI 2021; `heads/attanet.py`) on ADE20K with ResNet-50 or ResNet-101
(`:depth=50` default, `:depth=101`): the paper's ADE20K settings on the released recipe.

  python -m flaseg.main --config=configs/attanet_ade20k.py:depth=101 \
      --workdir=runs/attanet_r101_ade20k --config.data.root=/data/ade

The paper's text for ADE20K: crop 512, batch 32, 250k iterations (lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4 as for Cityscapes). The rest is the released Cityscapes recipe
(`config_lib.attanet_recipe`: colour jitter 0.5, scales [0.75, 2.0], exponential warm-up over
1000 iterations, 10x LR on the output heads, no decay on BN and biases, AttaNet OHEM at 0.7 on
the three outputs with weight 1, n_min = H*W/2 per 8-image GPU batch = 512*512/2 * 4 over the
global batch of 32; `:ddp` makes BatchNorm and OHEM per device as AttaNet's DDP training,
with n_min = 8 x 512 x 512 / 16 per 8-image device: `config_lib.ddp_without_syncbn`).
Backbone: torchvision-stem ResNet at output stride 32 as AttaNet-R18, head widths as the
released head (128). Test: 512 sliding windows at stride 427 with flip (the released
evaluate.py's rule, stride = 5/6 of the crop, at this crop), on the images resized as
flaseg's ADE20K part does (short side 512).
Not released (only the Cityscapes ResNet-18 code is): the ADE20K code, its test protocol and
how the head attaches to and is sized for ResNet-50/101 (AttaNet Table 4 gives 53.62M
parameters for ResNet-50 + AttaNet on Cityscapes, more than this 128-wide head on an
undilated ResNet-50 gives). Paper: 41.79 mIoU (R50, 116.3 GFLOPs), 43.71 (R101, 150.5 GFLOPs),
ADE20K val.
"""
from flaseg import config_lib
from flaseg.errors import ConfigError


def attanet_ade20k_recipe(c):
  """`config_lib.attanet_recipe` with the paper's ADE20K crop, batch and schedule."""
  config_lib.attanet_recipe(c)
  c.data.crop_size = (512, 512)
  c.train.batch_size = 32
  c.train.steps = 250000
  c.loss.ohem_min_kept = 512 * 512 // 2 * (32 // 8)
  return config_lib.slide_eval(c, (512, 512), (427, 427), flip=True)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, depth=50, ddp=False)
  if arg.depth not in (50, 101):
    raise ConfigError(f"configs/attanet_ade20k.py: depth={arg.depth}; choose 50 or 101")
  c = config_lib.network(config_lib.ade20k, attanet_ade20k_recipe, "attanet")
  c.model.backbone.depth = arg.depth
  c.model.backbone.stem = "torchvision"
  c.model.backbone.output_stride = 32
  if arg.ddp:
    config_lib.ddp_without_syncbn(c, images_per_device=8)
  return config_lib.apply_smoke(c) if arg.smoke else c
