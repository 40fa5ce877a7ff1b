"""DANet (mmseg DAHead: PAM + CAM) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/danet_cityscapes.py --workdir=runs/danet_cityscapes \
      --config.data.root=/data/cityscapes

'out' is mmseg's pam_cam output; inference uses it only.
Reference mIoU (Cityscapes val, single scale / ms+flip): 79.27 / 80.96 (attention-heads.md §1.4).
"""
from flaseg import config_lib

get_config = config_lib.mmseg_cityscapes(
    "danet", dict(channels=512, pam_channels=64, aux_channels=256),
    loss_weights={"out": 1.0, "pam": 1.0, "cam": 1.0, "aux": 0.4})
