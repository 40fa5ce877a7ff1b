"""FLANet on ADE20K (SceneParsing, 150 classes): the paper's recipe with its 520 crop for the
datasets other than Cityscapes (Song et al., AAAI 2022, Implementation Details).

  python -m flaseg.main --config=configs/fla_ade20k.py --workdir=runs/fla_ade20k \
      --config.data.root=/data/ade    # holds ADEChallengeData2016/{images,annotations}

Deep-stem ResNet-101 at output stride 8, crop 520, batch 8, SGD lr 1e-2 poly 0.9, momentum
0.9, wd 5e-4, 240 epochs of 20,210 images = 606,300 iterations (the paper's text; mmseg's
ADE20K schedule is --config.train.steps=160000). Label 0 ('other') is ignored and class k is
stored as k + 1. Evaluation follows mmseg's ADE20K protocol: validation images resized to
short side 512 (long side at most 2048), then multi-scale (0.5-1.75) + flip over 520x520
windows; mIoU is computed at that resized resolution. Paper: 46.68 mIoU (val, R101).
Eval batches are padded to their largest image (config.eval.pad_to=(0, 0)): the one shape that
holds every resized image is 2048x2048, about 18x the test's work (config_lib.ade20k); set
--config.eval.pad_to=(2048,2048) for multi-host runs, where every process needs one shape.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.ade20k, config_lib.flanet_recipe, "fla")
  c.checkpoint.every = 5000
  return config_lib.apply_smoke(c) if arg.smoke else c
