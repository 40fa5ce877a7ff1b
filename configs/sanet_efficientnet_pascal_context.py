"""SANet (Zhong et al., CVPR 2020; `heads/sanet.py`) on EfficientNet-B7 for PASCAL Context, 60
classes with background (its Table 3: 54.4 mIoU; Table 2: 55.3 on the 59 classes, 81.6 PAcc,
`--config.data.context_60=False`).

  python -c "import timm, torch; m = timm.create_model('tf_efficientnet_b7.aa_in1k', \
      pretrained=True, features_only=True); torch.save(m.state_dict(), 'effnet_b7.pth')"
  python -m flaseg.convert --source=timm --checkpoint=effnet_b7.pth \
      --config=configs/sanet_efficientnet_pascal_context.py --out=pretrained/tf_efficientnet_b7
  python -m flaseg.main --config=configs/sanet_efficientnet_pascal_context.py \
      --workdir=runs/sanet_effb7_context --config.data.root=/data/context \
      --config.init.backbone=pretrained/tf_efficientnet_b7

Backbone: timm `tf_efficientnet_b7` (flaseg/models/efficientnet.py; TF "same" padding, BN eps
1e-3) dilated to output stride 8 as timm's builder does it; the SA heads read c2..c5 = 48, 80,
224 and 640 channels at 1/4, 1/8, 1/8, 1/8. The paper says only "EffNet-b7" and "dilated FCNs
have been used as the backbones": output stride, dilation rule, attachment points and which
ImageNet weights are not given (.aa_in1k are the EfficientNet paper's own AutoAugment weights;
timm also has .ra / .ap / .ns_jft, the .ap ones with Inception mean/std).

Recipe, from the paper text (Sec. 4.1 "Implementation"): SGD, poly schedule, lr 1e-3,
batch 16, SyncBN, 40 epochs of the 4,998 training images = 12,495 iterations. Silent in the
text, taken from PyTorch-Encoding's defaults (experiments/segmentation/option.py at e0e2878:
SANet's lr / batch / SyncBN are exactly its Context defaults): momentum 0.9, weight decay 1e-4,
poly power 0.9, crop 480 (base size 520, scales 0.5-2.0). Loss: out 1 + se (class-presence
BCE) 0.2 + aux 0.8 (Fig. 4's values, unverified); `config_lib.sanet_recipe`, as
configs/sanet_pascal_context.py (ResNet-101) with EfficientNet-B7 in place of it. Stochastic
depth off (timm's default; not stated). Test protocol not stated: flaseg's Context protocol
(config_lib.pascal_context: original size, 520 windows, scales 0.5-1.75 + flip).
"""
import ml_collections

from flaseg import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, smoke=False)
  c = config_lib.network(config_lib.pascal_context,
                         lambda c: config_lib.sanet_recipe(c, lr=1e-3, epochs=40), "sanet")
  c.data.context_60 = True  # Table 3's 54.4 counts the background class
  c.model.backbone = ml_collections.ConfigDict(dict(
      name="efficientnet", variant="b7", output_stride=8, drop_path_rate=0.0))
  return config_lib.apply_smoke(c) if arg.smoke else c  # smoke: EfficientNet-B0
