"""Builds a `Segmenter` from `config.model`.

  model.head          a key of HEADS
  model.head_kwargs   keyword arguments of that head class (channels, dropout, ...)
  model.backbone      ResNet fields (depth, stem, output_stride, contract_dilation, multi_grid,
                      avg_down, width)
  model.num_classes, model.align_corners, model.dtype ('float32' | 'bfloat16')
"""
import dataclasses

import jax.numpy as jnp

from flaseg.models.heads.attanet import AttaNetHead
from flaseg.models.heads.cc import CCHead
from flaseg.models.heads.channel_nl import ChannelNLHead, CSNLHead
from flaseg.models.heads.danet import DAHead
from flaseg.models.heads.denoised_nl import DenoisedNLHead
from flaseg.models.heads.dnl import DNLHead
from flaseg.models.heads.ema import EMAHead
from flaseg.models.heads.fcn import FCNHead
from flaseg.models.heads.fla import FLAHead
from flaseg.models.heads.isa import ISAHead
from flaseg.models.heads.nl import NLHead
from flaseg.models.heads.reconet import RecoNetHead
from flaseg.models.heads.sanet import SANetHead
from flaseg.models.resnet import ResNet
from flaseg.models.segmenter import Segmenter

HEADS = {
    "fcn": FCNHead,
    "fla": FLAHead,
    # mmseg heads
    "nl": NLHead,
    "dnl": DNLHead,
    "danet": DAHead,
    "emanet": EMAHead,
    "isanet": ISAHead,
    "ccnet": CCHead,
    # paper heads
    "channel_nl": ChannelNLHead,
    "cs_nl": CSNLHead,
    "denoised_nl": DenoisedNLHead,
    "reconet": RecoNetHead,
    "attanet": AttaNetHead,
    "sanet": SANetHead,
}
# float64 (with jax_enable_x64) is for numerical reference checks only.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def _check_fields(cls, kwargs, key):
  names = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  for k in kwargs:
    if k not in names:
      raise ValueError(f"{key}.{k}: unknown field of {cls.__name__}; known: {sorted(names)}")


def build_model(cfg) -> Segmenter:
  if cfg.head not in HEADS:
    raise ValueError(f"config.model.head={cfg.head!r}: choose one of {sorted(HEADS)}")
  if cfg.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype={cfg.dtype!r}: choose one of {sorted(DTYPES)}")
  dtype = DTYPES[cfg.dtype]
  backbone_kwargs = dict(cfg.backbone)
  if backbone_kwargs.get("multi_grid") is not None:
    backbone_kwargs["multi_grid"] = tuple(backbone_kwargs["multi_grid"])
  _check_fields(ResNet, backbone_kwargs, "config.model.backbone")
  head_cls = HEADS[cfg.head]
  head_kwargs = dict(cfg.get("head_kwargs", {}))
  _check_fields(head_cls, head_kwargs, "config.model.head_kwargs")
  return Segmenter(backbone=ResNet(**backbone_kwargs, dtype=dtype),
                   head=head_cls(num_classes=cfg.num_classes, **head_kwargs, dtype=dtype),
                   align_corners=cfg.align_corners, dtype=dtype)
