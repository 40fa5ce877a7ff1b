"""FCN (mmseg FCNHead baseline) on Cityscapes: mmseg's R-50-D8 769x769 80k recipe.

  python -m flaseg.main --config=configs/fcn_cityscapes.py --workdir=runs/fcn_cityscapes \
      --config.data.root=/data/cityscapes

With mmseg's layer3 auxiliary FCNHead (256 channels, weight 0.4) as output 'aux'.
Reference mIoU (Cityscapes val, single scale / ms+flip): 72.64 / 73.32 (mmseg
configs/fcn/README.md, FCN R-50-D8 769x769 80k; not in attention-heads.md §1.4).
"""
from flaseg import config_lib

get_config = config_lib.mmseg_cityscapes(
    "fcn", dict(channels=512, num_convs=2, concat_input=True, aux_channels=256))
