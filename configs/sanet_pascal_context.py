"""SANet (Zhong et al., CVPR 2020; `heads/sanet.py`) on PASCAL Context, the paper's recipe.

  python -m flaseg.main --config=configs/sanet_pascal_context.py \
      --workdir=runs/sanet_context --config.data.root=/data/context
  # 60 classes (background counted): --config.data.context_60=True

Dilated ResNet-101 (PyTorch-Encoding's: deep stem, output stride 8), SGD lr 1e-3 poly 0.9,
batch 16, SyncBN, 40 epochs of the 4,998 training images = 12,495 iterations (the paper's
text); momentum 0.9, wd 1e-4, crop 480, scales 0.5-2.0 from PyTorch-Encoding's defaults (the
text is silent; `config_lib.sanet_recipe`). Loss out 1 + se 0.2 + aux 0.8 (Fig. 4's values,
unverified). Test protocol not stated: flaseg's Context protocol (original size, 520 windows,
scales 0.5-1.75 + flip). SE head width: `heads/sanet.py` (the text's "4" read as a reduction
ratio; --config.model.head_kwargs.se_channels=4 is the literal reading).
Paper: 53.0 mIoU on the 59 classes, 52.1 on 60 (ResNet-101).
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.pascal_context,
                         lambda c: config_lib.sanet_recipe(c, lr=1e-3, epochs=40), "sanet")
  return config_lib.apply_smoke(c) if arg.smoke else c
