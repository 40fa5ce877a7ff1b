"""The empirical study's protocol (Guo et al., arXiv 2309.10217): eight attention networks,
one backbone and one training setup.

  python -m flaseg.main --config=configs/study.py:head=fla --workdir=runs/study_fla \
      --config.data.root=/data/cityscapes
  python -m flaseg.main --config=configs/study.py:head=nl,dataset=ade20k --workdir=...
  python scripts/study.py                       # the study's table for the eight networks

The networks (`NETWORKS`): Non-Local, DANet, DNLNet, RecoNet, FLANet, EMANet, ISANet (the
study's "ISSANet") and CCNet. Both readings of the study's "DNLNet" are rows: `dnl`
(Disentangled NL, mmseg) and `denoised_nl` (Denoised NL, FLANet's group).

One setup for every network (`study_protocol`), the study's figures (ResNet-101, output
stride 8, 80k iterations, batch 8, lr 1e-2 poly, SyncBN, crop 769 / 520) completed with
mmseg's R-101-D8 recipe, which six of the eight networks were released with:
  backbone  ResNetV1c-101 (deep stem 32-32-64), dilations 1, 1, 2, 4 (contract_dilation, no
            multi-grid), output stride 8, for every head;
  data      crop 769 (Cityscapes) / 520 (ADE20K), scales 0.5-2.0, flip, PhotoMetricDistortion,
            RandomCrop(cat_max_ratio=0.75);
  optim     SGD lr 1e-2 poly 0.9 down to 1e-4, momentum 0.9, wd 5e-4, no warm-up, no LR
            multipliers, batch 8 (global BatchNorm: SyncBN), 80k iterations;
  loss      cross-entropy averaged over all pixels (mmseg), no OHEM, weight 1 on 'out' and 0.4
            on every other output of the head;
  test      single scale, no flip, crop-sized windows at 2/3 of the crop (769 / 513 on
            Cityscapes resized to 1025x2049, 520 / 346 on ADE20K), scored at the labels'
            original size.
Per-network settings, only where a head cannot work without them (tests/test_study.py checks
that no other key differs):
  every head  its own module and widths (head_kwargs of configs/<head>_cityscapes.py: the
              network itself, not the recipe) and its own auxiliary outputs: an mmseg FCN on
              layer3 ('aux'; nl, dnl, danet, emanet, isanet, ccnet, reconet), FLANet's two
              FLANetOutputs on layer2/layer3 (fla), Denoised NL's layer2 output and global
              rectifier classifier (denoised_nl), DANet's PAM and CAM outputs (danet);
  reconet     profile_size = crop / 8 rounded up (97, 65): its per-rank maps are sized to the
              training feature map.
"""
import math
import os

from flaseg import config_lib
from flaseg.errors import ConfigError

# The study's datasets: crop (training and test windows), test stride and the dataset part.
DATASETS = {"cityscapes": ((769, 769), (513, 513), config_lib.cityscapes),
            "ade20k": ((520, 520), (346, 346), config_lib.ade20k)}
# The study's eight networks, with both readings of its "DNLNet".
NETWORKS = ("nl", "danet", "dnl", "denoised_nl", "reconet", "fla", "emanet", "isanet", "ccnet")
# Other heads run under the same protocol for comparison (not rows of the study).
OTHER_HEADS = ("fcn", "channel_nl", "cs_nl", "attanet", "sanet")
HEADS = NETWORKS + OTHER_HEADS


def study_protocol(c, crop, stride):
  """The one backbone and training setup (module docstring) on config `c` with its dataset
  part already applied."""
  config_lib.mmseg_recipe(c)
  c.model.backbone.depth = 101
  c.data.crop_size = tuple(crop)
  return config_lib.slide_eval(c, crop, stride)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, head="fla", dataset="cityscapes", smoke=False)
  if arg.dataset not in DATASETS:
    raise ConfigError(f"configs/study.py: dataset={arg.dataset!r}; choose one of "
                      f"{sorted(DATASETS)}")
  if arg.head not in HEADS:
    raise ConfigError(f"configs/study.py: head={arg.head!r}; the study's networks are "
                      f"{NETWORKS} (also runs {OTHER_HEADS})")
  own = config_lib.load(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     f"{arg.head}_cityscapes.py"))
  crop, stride, dataset = DATASETS[arg.dataset]
  c = config_lib.network(dataset, lambda c: study_protocol(c, crop, stride), arg.head,
                         own.model.head_kwargs)
  c.loss.weights = {k: 1.0 if k == "out" else 0.4 for k in own.loss.weights}
  if arg.head == "reconet":
    c.model.head_kwargs.profile_size = math.ceil(crop[0] / 8)
  return config_lib.apply_smoke(c) if arg.smoke else c
