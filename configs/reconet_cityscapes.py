"""RecoNet (Chen et al., ECCV 2020; `heads/reconet.py`) on Cityscapes.

  python -m flaseg.main --config=configs/reconet_cityscapes.py \
      --workdir=runs/reconet_cityscapes --config.data.root=/data/cityscapes

PyTorch-Encoding dilated ResNet-101 (deep stem, output stride 8, first block of a dilated
stage at half dilation), crop 769, batch 8, SGD lr 1e-2 poly 0.9, 80k iterations, slide test:
the recipe of the empirical study (arXiv 2309.10217). Loss weights out 1 / aux 0.2
(PyTorch-Encoding's default aux weight; the paper's are unverified). `profile_size` 97 is the
769-crop feature size (the per-rank 97 x 97 spatial maps act on the training map unresampled).
Default: flaseg's generalised TGM (height profile on H, trained lambda; not the released
computation on any map). `:released=True` is the released CWanli/RecoNet computation (width
factor on the H axis, lambda fixed at 1/R), which needs a 97x97 map: training crops and the
769 sliding windows give it; whole-image evaluation does not (a one-line error).
No Cityscapes figure for RecoNet is in paper-tables.md (the study lists it without numbers).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False, released=False)
  head_kwargs = dict(profile_size=97, **({"released": True} if arg.released else {}))
  c = config_lib.network(config_lib.cityscapes, config_lib.study_recipe, "reconet", head_kwargs,
                         loss_weights={"out": 1.0, "aux": 0.2})
  c.checkpoint.every = 2000
  c.model.backbone.contract_dilation = True  # PyTorch-Encoding's dilated ResNet
  return config_lib.apply_smoke(c) if arg.smoke else c
