"""SANet (Zhong et al., CVPR 2020; `heads/sanet.py`) on PASCAL VOC 2012 + SBD, the paper's
recipe without COCO pre-training (its 83.2 mIoU, VOC test, ResNet-101).

  python -m flaseg.main --config=configs/sanet_voc.py --workdir=runs/sanet_voc \
      --config.data.root=/data/voc    # holds VOCdevkit/VOC2012 with SBD's SegmentationClassAug

Dilated ResNet-101 (PyTorch-Encoding's: deep stem, output stride 8), SGD lr 1e-4 poly 0.9
(the text's VOC learning rate), batch 16, SyncBN, 80 epochs of the 10,582 'trainaug' images
(the text: "we train the SANet using augmented data for 80 epochs") = 52,910 iterations;
momentum 0.9, wd 1e-4, crop 480, scales 0.5-2.0 from PyTorch-Encoding's defaults
(`config_lib.sanet_recipe`). Loss out 1 + se 0.2 + aux 0.8 (Fig. 4's values, unverified).
Not reproduced: the text's COCO-pretrained variant (85.4 / 86.1), pre-trained on COCO and then
trained "for 50 epochs on the validation set". The text gives one VOC learning rate (1e-4) for
both; it may belong to the COCO fine-tuning only. Test protocol not stated: flaseg's VOC
protocol (original size, 520 windows, scales 0.5-1.75 + flip); for the test server export
with --config.data.val_split=test --config.eval.export_dir=DIR.
"""
from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.voc,
                         lambda c: config_lib.sanet_recipe(c, lr=1e-4, epochs=80), "sanet")
  return config_lib.apply_smoke(c) if arg.smoke else c
