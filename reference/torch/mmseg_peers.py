"""mmsegmentation 1.2.2's own networks as the peers of flaseg's mmseg heads.

* `mmseg_segmentor(config)`: mmsegmentation's own `EncoderDecoder` for the heads it has (fcn,
  nl, dnl, danet, ccnet, emanet, isanet), with the ResNetV1c backbone of `config.model`, plain
  BN and the layer3 FCN auxiliary head, as mmseg's R-50-D8 configs; and for the fcn_hrnet
  configs mmseg's fcn_hr* segmentor (`hrnet_fcn_segmentor`).
* `hrnet_extra(width, blocks, modules)`: mmseg's `extra` dict of HRNetV2-W`width`.
* `mmseg_outputs(net, x, train)`: its logits under flaseg's output names.
* `import_mmseg(torch)`: mmseg's model registry, also with mmcv-lite (no compiled ops).
"""
import os
import sys
import types

from flaseg.models import resnet
from reference.torch.imports import declare_torchvision_ops, import_torch

MMSEG_HEADS = ("fcn", "nl", "dnl", "danet", "ccnet", "emanet", "isanet")


def import_mmseg(torch):
  """mmseg's model registry. With mmcv-lite (no compiled ops) a bare `mmcv.ops` package
  stands in for the compiled one: its names become empty modules, except CCNet's
  CrissCrossAttention, which is plain PyTorch in mmcv and is loaded from its file."""
  declare_torchvision_ops(torch)  # mmengine imports torchvision
  import importlib.util
  import mmcv
  try:
    import mmcv.ops  # noqa: F401  (a full mmcv with compiled ops)
  except ImportError:
    ops = types.ModuleType("mmcv.ops")
    ops.__path__ = []
    ops.__file__ = "mmcv_ops_stub"

    def missing(name):
      if name.startswith("__"):
        raise AttributeError(name)
      return type(name, (torch.nn.Module,), {})

    ops.__getattr__ = missing
    sys.modules["mmcv.ops"] = ops
    path = os.path.join(importlib.util.find_spec("mmcv").submodule_search_locations[0],
                        "ops", "cc_attention.py")
    if os.path.isfile(path):
      spec = importlib.util.spec_from_file_location("mmcv.ops.cc_attention", path)
      cc = importlib.util.module_from_spec(spec)
      sys.modules["mmcv.ops.cc_attention"] = cc
      spec.loader.exec_module(cc)
      ops.CrissCrossAttention = cc.CrissCrossAttention
    mmcv.ops = ops
  from mmseg.registry import MODELS
  from mmseg.utils import register_all_modules
  register_all_modules()
  return MODELS


def _mmseg_decode_head(head: str, kw: dict) -> dict:
  """mmseg decode_head fields of a flaseg head's `head_kwargs` (the same defaults)."""
  if head == "fcn":
    return dict(type="FCNHead", channels=kw["channels"], num_convs=kw.get("num_convs", 2),
                concat_input=kw.get("concat_input", True))
  if head in ("nl", "dnl"):
    d = dict(type="NLHead" if head == "nl" else "DNLHead", channels=kw["channels"],
             reduction=kw.get("reduction", 2), use_scale=kw.get("use_scale", True),
             mode="embedded_gaussian")
    if head == "dnl":
      d["temperature"] = kw.get("temperature", 0.05)
    return d
  if head == "danet":
    return dict(type="DAHead", channels=kw["channels"], pam_channels=kw["pam_channels"])
  if head == "ccnet":
    return dict(type="CCHead", channels=kw["channels"], recurrence=kw.get("recurrence", 2),
                concat_input=True)
  if head == "emanet":
    return dict(type="EMAHead", channels=kw["channels"], ema_channels=kw["ema_channels"],
                num_bases=kw["num_bases"], num_stages=kw["num_stages"],
                momentum=kw.get("momentum", 0.1), concat_input=True)
  if head == "isanet":
    return dict(type="ISAHead", channels=kw["channels"], isa_channels=kw["isa_channels"],
                down_factor=tuple(kw["down_factor"]))
  raise ValueError(f"model.head={head!r}: mmseg has no such head; mmseg heads: {MMSEG_HEADS}")


def hrnet_extra(width: int, blocks: int = 4, modules=(1, 4, 3)) -> dict:
  """mmseg's `extra` of fcn_hr18 / fcn_hr48 for HRNetV2-W`width` (fcn_hr18s: blocks 2,
  modules (1, 3, 2))."""
  c = [width * 2 ** b for b in range(4)]
  return dict(
      stage1=dict(num_modules=1, num_branches=1, block="BOTTLENECK", num_blocks=(blocks,),
                  num_channels=(64,)),
      **{f"stage{s}": dict(num_modules=modules[s - 2], num_branches=s, block="BASIC",
                           num_blocks=(blocks,) * s, num_channels=tuple(c[:s]))
         for s in (2, 3, 4)})


def _is_hrnet_fcn(config) -> bool:
  return config.model.backbone.get("name", "resnet") == "hrnet"


def hrnet_fcn_segmentor(config):
  """mmseg's fcn_hr* EncoderDecoder (configs/_base_/models/fcn_hr18.py at the config's width):
  HRNet, FCNHead on the resize_concat of the four branches, one 1x1 ConvBNReLU, no dropout, no
  auxiliary head; equal to flaseg's configs/fcn_hrnet48_*.py (tests/test_backbone_hrnet.py)."""
  torch = import_torch()
  models = import_mmseg(torch)
  m = config.model
  bb = m.backbone
  kw = dict(m.head_kwargs)
  chans = [bb.width * 2 ** b for b in range(4)]
  norm = dict(type="BN", requires_grad=True)
  extra = hrnet_extra(bb.width, bb.get("num_blocks", 4), tuple(bb.get("num_modules", (1, 4, 3))))
  return models.build(dict(
      type="EncoderDecoder",
      backbone=dict(type="HRNet", extra=extra, norm_cfg=norm, norm_eval=False),
      decode_head=dict(type="FCNHead", in_channels=chans, in_index=(0, 1, 2, 3),
                       channels=kw["channels"], input_transform="resize_concat",
                       kernel_size=kw.get("kernel", 3), num_convs=kw.get("num_convs", 2),
                       concat_input=kw.get("concat_input", True),
                       dropout_ratio=kw.get("dropout", 0.1) or -1, num_classes=m.num_classes,
                       norm_cfg=norm, align_corners=m.align_corners),
      train_cfg=dict(), test_cfg=dict(mode="whole")))


def check(config):
  """Raises a one-line ValueError if mmseg has no peer of `config.model`; builds nothing."""
  m = config.model
  bb = m.backbone
  if _is_hrnet_fcn(config):
    if m.head != "fcn" or m.neck != "resize_concat":
      raise ValueError(f"model.head={m.head!r} on HRNet: mmseg's peer is fcn_hr* only "
                       "(head 'fcn', neck 'resize_concat')")
    return
  if bb.get("name", "resnet") != "resnet":
    raise ValueError(f"config.model.backbone.name={bb.name!r}: mmseg peers exist for resnet "
                     "and hrnet (fcn) only")
  if m.head not in MMSEG_HEADS:
    raise ValueError(f"model.head={m.head!r}: mmseg has no such head; "
                     f"mmseg heads: {MMSEG_HEADS}")
  if bb.stem != "v1c" or bb.get("multi_grid") or bb.get("avg_down"):
    raise ValueError(f"config.model.backbone: mmseg's ResNetV1c needs stem='v1c' and no "
                     f"multi_grid/avg_down; got stem={bb.stem!r}")


def mmseg_segmentor(config):
  """mmseg's EncoderDecoder equivalent to `build_model(config.model)` (mmseg heads only)."""
  check(config)
  if _is_hrnet_fcn(config):
    return hrnet_fcn_segmentor(config)
  torch = import_torch()
  models = import_mmseg(torch)
  m = config.model
  bb = m.backbone
  strides, dilations = resnet.OUTPUT_STRIDES[bb.output_stride]
  chans = resnet.feature_channels(bb.depth, bb.width)
  norm = dict(type="BN", requires_grad=True)
  kw = dict(m.head_kwargs)
  decode = dict(in_channels=chans["c5"], in_index=3, dropout_ratio=kw.get("dropout", 0.1),
                num_classes=m.num_classes, norm_cfg=norm, align_corners=m.align_corners,
                **_mmseg_decode_head(m.head, kw))
  aux = dict(type="FCNHead", in_channels=chans["c4"], in_index=2,
             channels=kw.get("aux_channels", 256), num_convs=1, concat_input=False,
             dropout_ratio=0.1, num_classes=m.num_classes, norm_cfg=norm,
             align_corners=m.align_corners)
  return models.build(dict(
      type="EncoderDecoder",
      backbone=dict(type="ResNetV1c", depth=bb.depth, base_channels=bb.width,
                    stem_channels=bb.width, num_stages=4, out_indices=(0, 1, 2, 3),
                    dilations=dilations, strides=strides, norm_cfg=norm, style="pytorch",
                    contract_dilation=bb.contract_dilation),
      decode_head=decode, auxiliary_head=aux, train_cfg=dict(), test_cfg=dict(mode="whole")))


def mmseg_outputs(net, x, train: bool) -> dict:
  """flaseg-named logits of an mmseg segmentor at the decode resolution."""
  feats = net.extract_feat(x)
  out = net.decode_head(feats)
  outs = {}
  if isinstance(out, (tuple, list)):  # DAHead: (pam_cam, pam, cam)
    outs["out"], outs["pam"], outs["cam"] = out
  else:
    outs["out"] = out
  if train and getattr(net, "auxiliary_head", None) is not None:
    outs["aux"] = net.auxiliary_head(feats)
  else:
    outs = {"out": outs["out"]}
  return outs
