"""AttaNet (Song et al., AAAI 2021; `heads/attanet.py`) on Cityscapes, the official recipe.

  python -m flaseg.main --config=configs/attanet_cityscapes.py \
      --workdir=runs/attanet_cityscapes --config.data.root=/data/cityscapes

ResNet-18 (torchvision stem, no dilation, output stride 32), crop 1024x1024, batch 16 (2 GPUs
x 8), 200k iterations, SGD lr 1e-2 poly 0.9, momentum 0.9, wd 5e-4 without decay on BN and
biases, exponential warm-up over 1000 iterations from 1e-5, 10x LR on the three output heads,
AttaNet OHEM (thresh 0.7, n_min = H*W/2 per 8-image GPU batch, i.e. 1024*1024 over the global
batch of 16) on all three outputs with weight 1 (train.py, loss.py, optimizer.py), the
upsizing crop and the 90-degree rotation (transform.py). BatchNorm and OHEM over the global
batch (SyncBN) by default; `:ddp` trains as AttaNet did, DDP with plain BatchNorm: per-device
BatchNorm statistics and per-device OHEM (n_min = 8 x 1024 x 1024 / 16 per device), which is
AttaNet's split only on 2 devices of 8 images (`config_lib.ddp_without_syncbn`).
Not reproduced: the discrete scale set {0.75, ..., 2.0} (a continuous range [0.75, 2.0]
here). Default test: 1024 sliding windows at stride 854 with flip, as the released
evaluate.py; the paper gives no figure for that protocol (the released val checkpoint's
78.8 is the repository README's, its protocol not stated). The paper's 78.5 mIoU
(Cityscapes test, ResNet-18, 130 FPS) is a real-time figure: compare it with `:realtime`,
which evaluates as it is measured (the 1024x2048 image resized to 512x1024 inside the model,
the prediction resized back, single scale, no flip; `config_lib.realtime_eval`).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, realtime=False, ddp=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.attanet_recipe, "attanet")
  # The network: ResNet-18, torchvision stem, no dilation.
  c.model.backbone.depth = 18
  c.model.backbone.stem = "torchvision"
  c.model.backbone.output_stride = 32
  if arg.realtime:
    config_lib.realtime_eval(c)
  if arg.ddp:
    config_lib.ddp_without_syncbn(c, images_per_device=8)
  return config_lib.apply_smoke(c) if arg.smoke else c
