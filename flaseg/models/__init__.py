"""Builds a `Segmenter` from `config.model`, and its initial variables.

  model.head          a key of HEADS (one line per network: add yours here)
  model.head_kwargs   keyword arguments of that head class (channels, dropout, ...)
  model.backbone      `name` (a key of BACKBONES, default 'resnet') and that class's fields
                      (ResNet: depth, stem, output_stride, contract_dilation, multi_grid,
                      avg_down, width)
  model.neck          '' or a key of NECKS ('resize_concat': HRNetV2's 'concat' feature), with
                      model.neck_kwargs
  model.lowering      `Lowering` fields: how convolutions and attention are computed
  model.num_classes, model.align_corners, model.dtype ('float32' | 'bfloat16')

A backbone is a Flax module with the fields `dtype` and `lowering` and its own; `__call__(x,
train)` returns a dict of NHWC features and `feature_spec()` their {name: (stride, channels)}
without an input. A head (heads/head.py) has the fields `num_classes`, `dtype` and
`lowering` (passed by `build_model`) and whatever `head_kwargs` sets; it maps the feature dict
to a dict of logits (B, h, w, K) at any feature resolution, 'out' being the prediction, and
names the features it reads (`required_features()`): a backbone that does not give them is a
one-line error here (README "Adding a head").
"""
import dataclasses

import flax
import jax.numpy as jnp

from flaseg.errors import ConfigError
from flaseg.models.attanet_light import AttaNetLightBackbone
from flaseg.models.dfnet import DFNet
from flaseg.models.efficientnet import EfficientNet
from flaseg.models.heads.attanet import AttaNetHead
from flaseg.models.heads.attanet_light import AttaNetLightHead
from flaseg.models.heads.ccnet import CCNetHead
from flaseg.models.heads.channel_nl import ChannelNLHead
from flaseg.models.heads.cs_nl import CSNLHead
from flaseg.models.heads.danet import DANetHead
from flaseg.models.heads.denoised_nl import DenoisedNLHead
from flaseg.models.heads.dnl import DNLHead
from flaseg.models.heads.emanet import EMANetHead
from flaseg.models.heads.fcn import FCNHead
from flaseg.models.heads.fla import FLAHead
from flaseg.models.heads.fla_ablation import FLAAblationHead
from flaseg.models.heads.isanet import ISANetHead
from flaseg.models.heads.nl import NLHead
from flaseg.models.heads.reconet import RecoNetHead
from flaseg.models.heads.sanet import SANetHead
from flaseg.models.hrnet import HRNet
from flaseg.models.lowering import Lowering
from flaseg.models.necks import NECKS
from flaseg.models.resnet import ResNet
from flaseg.models.segmenter import Segmenter
from flaseg.models.shufflenet import ShuffleNetV2

BACKBONES = {
    "resnet": ResNet,
    "dfnet": DFNet,
    "attanet_light": AttaNetLightBackbone,
    "hrnet": HRNet,
    "shufflenet_v2": ShuffleNetV2,
    "efficientnet": EfficientNet,
}

HEADS = {
    "fcn": FCNHead,
    "fla": FLAHead,
    # mmseg heads
    "nl": NLHead,
    "dnl": DNLHead,
    "danet": DANetHead,
    "emanet": EMANetHead,
    "isanet": ISANetHead,
    "ccnet": CCNetHead,
    # paper heads
    "fla_ablation": FLAAblationHead,
    "channel_nl": ChannelNLHead,
    "cs_nl": CSNLHead,
    "denoised_nl": DenoisedNLHead,
    "reconet": RecoNetHead,
    "attanet": AttaNetHead,
    "attanet_light": AttaNetLightHead,
    "sanet": SANetHead,
}
# float64 (with jax_enable_x64) is for numerical reference checks only.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def _checked_kwargs(cls, kwargs, key) -> dict:
  names = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  for k in kwargs:
    if k not in names:
      raise ConfigError(f"{key}.{k}: unknown field of {cls.__name__}; known: {sorted(names)}")
  return dict(kwargs)


def build_model(cfg) -> Segmenter:
  """The network `cfg` (= config.model) describes; see the module docstring."""
  if cfg.head not in HEADS:
    raise ConfigError(f"config.model.head={cfg.head!r}: choose one of {sorted(HEADS)}")
  if cfg.dtype not in DTYPES:
    raise ConfigError(f"config.model.dtype={cfg.dtype!r}: choose one of {sorted(DTYPES)}")
  lowering = _checked_kwargs(Lowering, cfg.get("lowering", {}), "config.model.lowering")
  if cfg.get("attention"):  # issue 14's spelling of config.model.lowering.attention
    lowering["attention"] = cfg.attention
  common = dict(dtype=DTYPES[cfg.dtype], lowering=Lowering(**lowering))
  backbone_kwargs = dict(cfg.backbone)
  name = backbone_kwargs.pop("name", "resnet")
  if name not in BACKBONES:
    raise ConfigError(f"config.model.backbone.name={name!r}: choose one of {sorted(BACKBONES)}")
  backbone_cls = BACKBONES[name]
  backbone_kwargs = _checked_kwargs(backbone_cls, backbone_kwargs, "config.model.backbone")
  for k, v in backbone_kwargs.items():  # ConfigDict lists -> hashable tuples (module fields)
    if isinstance(v, list):
      backbone_kwargs[k] = tuple(v)
  backbone = backbone_cls(**backbone_kwargs, **common)
  spec = backbone.feature_spec()
  neck = None
  if cfg.get("neck"):
    if cfg.neck not in NECKS:
      raise ConfigError(f"config.model.neck={cfg.neck!r}: choose '' or one of {sorted(NECKS)}")
    neck_cls = NECKS[cfg.neck]
    neck = neck_cls(**_checked_kwargs(neck_cls, cfg.get("neck_kwargs", {}),
                                      "config.model.neck_kwargs"))
    missing = [k for k in neck.inputs if k not in spec]
    if missing:
      raise ConfigError(f"config.model.neck={cfg.neck!r} takes features {missing}; backbone "
                        f"{name!r} gives {sorted(spec)}")
    spec = neck.feature_spec(spec)
  head_cls = HEADS[cfg.head]
  head_kwargs = _checked_kwargs(head_cls, cfg.get("head_kwargs", {}), "config.model.head_kwargs")
  head = head_cls(num_classes=cfg.num_classes, **head_kwargs, **common)
  # Heads built on heads.head.Head name what they read; any other module is trusted.
  required = getattr(head, "required_features", lambda: ())()
  missing = [k for k in required if k not in spec]
  if missing:
    raise ConfigError(f"config.model.head={cfg.head!r} takes features {missing}; backbone "
                      f"{name!r}{' with neck ' + repr(cfg.neck) if neck else ''} gives "
                      f"{sorted(spec)}")
  return Segmenter(backbone=backbone, head=head, neck=neck, align_corners=cfg.align_corners,
                   dtype=common["dtype"])


def init_variables(model, rng, image_shape):
  """Initial variables for images of `image_shape` (B, H, W, 3), split into (params, state):
  state holds every other collection (batch_stats, EMANet's 'ema', ...)."""
  variables = model.init({"params": rng, "dropout": rng}, jnp.zeros(image_shape, jnp.uint8))
  variables = flax.core.unfreeze(variables)
  params = variables.pop("params")
  return params, variables
