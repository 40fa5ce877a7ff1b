"""RecoNet (Chen et al., ECCV 2020; `heads/reconet.py`) on Cityscapes.

  python -m flaseg.main --config=configs/reconet_cityscapes.py \
      --workdir=runs/reconet_cityscapes --config.data.root=/data/cityscapes

PyTorch-Encoding dilated ResNet-101 (deep stem, output stride 8, first block of a dilated
stage at half dilation), crop 769, batch 8, SGD lr 1e-2 poly 0.9, 80k iterations, slide test:
the recipe of the empirical study (arXiv 2309.10217). Loss weights out 1 / aux 0.2
(PyTorch-Encoding's default aux weight; the paper's are unverified). `profile_size` 97 is the
769-crop feature size, so training matches the original's dense spatial factors exactly.
No Cityscapes figure for RecoNet is in paper-tables.md (the study lists it without numbers).
`:smoke` shrinks it to a seconds-long run on synthetic data.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.base_config()
  c.data.name = "cityscapes"
  c.data.root = "data/cityscapes"
  c.data.crop_size = (769, 769)
  c.model.head = "reconet"
  c.model.head_kwargs.profile_size = 97
  c.model.num_classes = 19
  c.model.align_corners = True
  c.model.backbone.depth = 101
  c.model.backbone.stem = "deep"
  c.model.backbone.output_stride = 8
  c.model.backbone.contract_dilation = True
  c.loss.weights = {"out": 1.0, "aux": 0.2}
  c.optim.lr = 1e-2
  c.train.steps = 80000
  c.train.batch_size = 8
  c.checkpoint.every = 2000
  c.eval.mode = "slide"
  c.eval.crop_size = (769, 769)
  c.eval.stride = (513, 513)
  if arg.smoke:
    config_lib.apply_smoke(c)
    c.model.head_kwargs.channels = 16
    c.model.head_kwargs.rank = 4
    c.model.head_kwargs.profile_size = 8
    c.model.head_kwargs.aux_channels = 8
  return c
