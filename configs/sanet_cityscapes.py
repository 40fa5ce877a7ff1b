"""SANet (Zhong et al., CVPR 2020; `heads/sanet.py`) on Cityscapes: flaseg's own experiment,
not the paper's (SANet reports no Cityscapes result; its datasets are configs/sanet_voc.py and
configs/sanet_pascal_context.py).

  python -m flaseg.main --config=configs/sanet_cityscapes.py \
      --workdir=runs/sanet_cityscapes --config.data.root=/data/cityscapes

The paper trains a dilated ResNet-101 (output stride 8) on PASCAL Context (lr 1e-3, batch 16,
40 epochs) and VOC; it has no Cityscapes recipe. This config uses the backbone of the paper's
code base (PyTorch-Encoding: deep stem, first block of a dilated stage at half dilation) with
the common Cityscapes recipe (crop 769, batch 8, lr 1e-2 poly 0.9, 80k iterations, slide test).
Loss: out 1, se (class-presence BCE) alpha = 0.2, aux beta = 0.8 -- recalled from the paper's
Fig. 4, unverified. No paper figure to compare with (53.0 PASCAL Context and 83.2 VOC are
the other configs').
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.cityscapes, config_lib.study_recipe, "sanet",
                         loss_weights={"out": 1.0, "se": 0.2, "aux": 0.8})
  c.checkpoint.every = 2000
  c.model.backbone.contract_dilation = True  # PyTorch-Encoding's dilated ResNet
  return config_lib.apply_smoke(c) if arg.smoke else c
