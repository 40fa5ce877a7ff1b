"""AttaNet (Song et al., AAAI 2021; `heads/attanet.py`) on Cityscapes, the official recipe.

  python -m flaseg.main --config=configs/attanet_cityscapes.py \
      --workdir=runs/attanet_cityscapes --config.data.root=/data/cityscapes

ResNet-18 (torchvision stem, no dilation, output stride 32), crop 1024x1024, batch 16 (2 GPUs
x 8), 200k iterations, SGD lr 1e-2 poly 0.9, momentum 0.9, wd 5e-4 without decay on BN and
biases, exponential warm-up over 1000 iterations from 1e-5, 10x LR on the three output heads,
AttaNet OHEM (thresh 0.7, n_min = H*W/2 per 8-image GPU batch, i.e. 1024*1024 over the global
batch of 16) on all three outputs with weight 1 (train.py, loss.py, optimizer.py).
Not reproduced: the random 90-degree rotation and the discrete scale set {0.75, ..., 2.0}
(a continuous range [0.75, 2.0] here). Test: 1024 sliding windows at stride 854 with flip
(evaluate.py). Paper: 78.5 mIoU Cityscapes test at 130 FPS (ResNet-18); the released val
checkpoint scored 78.8.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  config_lib.cityscapes(c)
  # AttaNet's own recipe (train.py, loss.py, optimizer.py, evaluate.py of the official code).
  c.data.crop_size = (1024, 1024)
  c.data.scale_range = (0.75, 2.0)
  c.data.color_jitter = 0.5
  c.loss.weights = {"out": 1.0, "aux1": 1.0, "aux2": 1.0}
  c.loss.ohem = "attanet"
  c.loss.ohem_outputs = "all"
  c.loss.ohem_thresh = 0.7
  c.loss.ohem_min_kept = 1024 * 1024
  c.optim.lr = 1e-2
  c.optim.no_decay_bn_bias = True
  c.optim.warmup = "exp"
  c.optim.warmup_steps = 1000
  c.optim.warmup_start = 1e-5
  c.optim.lr_mult = {"head/conv_out": 10.0}
  c.train.steps = 200000
  c.train.batch_size = 16
  c.checkpoint.every = 5000
  config_lib.slide_eval(c, (1024, 1024), (854, 854), flip=True)
  # The network: ResNet-18, torchvision stem, no dilation.
  c.model.head = "attanet"
  c.model.backbone.depth = 18
  c.model.backbone.stem = "torchvision"
  c.model.backbone.output_stride = 32
  if arg.smoke:
    config_lib.apply_smoke(c)
  return c
