"""The empirical study's protocol (Guo et al., arXiv 2309.10217) for any head.

  python -m flaseg.main --config=configs/study.py:head=fla --workdir=runs/study_fla \
      --config.data.root=/data/cityscapes
  python -m flaseg.main --config=configs/study.py:head=nl,dataset=ade20k --workdir=...

Takes the head's own network from configs/<head>_cityscapes.py (head, kwargs, stem, loss
weights) and imposes the study's common recipe: ResNet-101 at output stride 8, 80k iterations,
batch 8, SGD lr 1e-2 poly 0.9, SyncBN (global BN under jit), crop 769 (Cityscapes) or 520
(ADE20K). Heads: fcn, fla, nl, channel_nl, danet, cs_nl, dnl, denoised_nl, reconet, emanet,
isanet, ccnet, attanet, sanet. Both readings of the study's "DNLNet" exist: `dnl`
(Disentangled NL, mmseg) and `denoised_nl` (Denoised NL, same group as FLANet).
"""
import os

from flaseg import config_lib

# The study's datasets: crop (training and test windows) and classes.
CROPS = {"cityscapes": (769, 769), "ade20k": (520, 520)}
# The heads the study compares on ResNet-101 (each configs/<head>_cityscapes.py is a ResNet one).
HEADS = ("fcn", "fla", "nl", "channel_nl", "danet", "cs_nl", "dnl", "denoised_nl", "reconet",
         "emanet", "isanet", "ccnet", "attanet", "sanet")
CLASSES = {"cityscapes": 19, "ade20k": 150}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, head="fla", dataset="cityscapes", smoke=False)
  if arg.dataset not in CROPS:
    raise ValueError(f"configs/study.py: dataset={arg.dataset!r}; choose one of {sorted(CROPS)}")
  if arg.head not in HEADS:
    raise ValueError(f"configs/study.py: head={arg.head!r}; the study's protocol (ResNet-101) "
                     f"runs one of {HEADS}")
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{arg.head}_cityscapes.py")
  c = config_lib.load(path)
  c.data.name = arg.dataset
  c.data.root = f"data/{arg.dataset}"
  c.model.num_classes = CLASSES[arg.dataset]
  crop = CROPS[arg.dataset]
  config_lib.study_recipe(c, crop=crop, stride=tuple(2 * s // 3 for s in crop))
  if arg.smoke:
    config_lib.apply_smoke(c)
    c.model = config_lib.load(f"{path}:smoke").model  # the head's own smoke network
  return c
