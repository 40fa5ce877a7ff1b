"""PyTorch peers of flaseg networks: the equivalence tests' references and the side-by-side
benchmark (`scripts/benchmark.py --reference=torch`).

Needs the reference packages (torch, mmsegmentation 1.2.2, mmcv-lite, mmengine; installed by
scripts/install_reference_packages.sh). flaseg's training path never imports this module.

* `mmseg_segmentor(config)`: mmsegmentation's own `EncoderDecoder` for the heads it has (fcn,
  nl, dnl, danet, ccnet, emanet, isanet), with the ResNetV1c backbone of `config.model`, plain
  BN and the layer3 FCN auxiliary head, as mmseg's R-50-D8 configs.
* `deep_stem_resnet(depth, width, multi_grid)`: the official FLANet / DenoisedNL backbone.
* `output_head(...)`: their output module (FLANetOutput, DenoisedNL's Output).
* `flanet(...)`: the official FLANet model.py's semantics (deep-stem dilated ResNet, FLA block,
  FLANetOutput heads) with its module names, for BasicBlock or Bottleneck backbones. The FLA
  block pairs every row/column with its own sample's encodings (the official code's
  `repeat(w, 1, 1)` mixes samples when batch > 1; `repeat_interleave` costs the same).
* `benchmark(config, size, batch)`: train-step and inference img/s of that network in PyTorch.
"""
import os
import sys
import types

import numpy as np

from flaseg import timing
from flaseg.models import resnet

MMSEG_HEADS = ("fcn", "nl", "dnl", "danet", "ccnet", "emanet", "isanet")
REFERENCE_HEADS = MMSEG_HEADS + ("fla",)


def import_torch():
  import torch
  return torch


def declare_torchvision_ops(torch):
  """torchvision's PyPI build lacks kernels for this torch (`operator torchvision::nms does
  not exist` on import): declare the two operators it registers fake kernels for."""
  if "torchvision" in sys.modules:
    return
  try:
    torch.ops.torchvision.nms
  except (AttributeError, RuntimeError):
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    declare_torchvision_ops.lib = lib  # keep the definitions alive


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


def mmseg_segmentor(config):
  """mmseg's EncoderDecoder equivalent to `build_model(config.model)` (mmseg heads only)."""
  torch = import_torch()
  models = import_mmseg(torch)
  check(config)
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
  if train:
    outs["aux"] = net.auxiliary_head(feats)
  else:
    outs = {"out": outs["out"]}
  return outs


def deep_stem_resnet(depth: int, width: int = 64, multi_grid=(1,)):
  """The official FLANet / DenoisedNL backbone as a torch module: the deep 3x3 stem
  (w, w, 2w), BasicBlocks or Bottlenecks, output stride 8 (layer3 dilation 2, layer4 4 times
  `multi_grid`, cycled over its blocks); forward returns (layer2, layer3, layer4)."""
  torch = import_torch()
  nn, F = torch.nn, torch.nn.functional
  kind, blocks = resnet.DEPTHS[depth]

  class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, dilation):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, planes, 3, stride, dilation, dilation, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)

    def residual(self, x):
      return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

  class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, dilation):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(planes * 4)

    def residual(self, x):
      y = F.relu(self.bn1(self.conv1(x)))
      return self.bn3(self.conv3(F.relu(self.bn2(self.conv2(y)))))

  block_cls = BasicBlock if kind == "basic" else Bottleneck

  class Block(block_cls):
    def __init__(self, cin, planes, stride, dilation):
      super().__init__(cin, planes, stride, dilation)
      cout = planes * self.expansion
      self.downsample = None
      if stride != 1 or cin != cout:
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout))

    def forward(self, x):
      shortcut = x if self.downsample is None else self.downsample(x)
      return F.relu(self.residual(x) + shortcut)

  class Backbone(nn.Module):
    def __init__(self):
      super().__init__()
      w = width
      self.conv1 = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w),
                                 nn.ReLU(), nn.Conv2d(w, w, 3, 1, 1, bias=False),
                                 nn.BatchNorm2d(w), nn.ReLU(),
                                 nn.Conv2d(w, 2 * w, 3, 1, 1, bias=False))
      self.bn1 = nn.BatchNorm2d(2 * w)
      cin = 2 * w
      for s, (n, stride, dil) in enumerate(zip(blocks, (1, 2, 1, 1), (1, 1, 2, 4))):
        planes, layers = w * 2 ** s, []
        for b in range(n):
          grid = multi_grid[b % len(multi_grid)] if s == 3 else 1
          layers.append(Block(cin, planes, stride if b == 0 else 1, dil * grid))
          cin = planes * block_cls.expansion
        setattr(self, f"layer{s + 1}", nn.Sequential(*layers))

    def forward(self, x):
      x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
      x1 = self.layer2(self.layer1(x))
      x2 = self.layer3(x1)
      return x1, x2, self.layer4(x2)

  return Backbone()


def output_head(cin: int, mid: int, num_classes: int, dropout: float, upsample: bool):
  """The official FLANet / DenoisedNL output module, its layers under `conv`: [nearest x2
  (FLANetOutput),] 3x3 conv, BN, ReLU, Dropout2d, 1x1 classifier with bias."""
  nn = import_torch().nn
  layers = [nn.Upsample(scale_factor=2)] if upsample else []
  layers += [nn.Conv2d(cin, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
             nn.Dropout2d(dropout), nn.Conv2d(mid, num_classes, 1, bias=True)]

  class Output(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv = nn.Sequential(*layers)

    def forward(self, x):
      return self.conv(x)

  return Output()


def flanet(depth: int, num_classes: int, width: int = 64, channels: int = 512,
           aux_channels: int = 64, dropout: float = 0.1):
  """The official FLANet (model.py) as a torch module; see the module docstring."""
  torch = import_torch()
  nn, F = torch.nn, torch.nn.functional

  class FLA(nn.Module):
    """FullyAttentionalBlock: the paper's Eq. 1-4, per sample."""

    def __init__(self, c):
      super().__init__()
      self.conv1, self.conv2 = nn.Linear(c, c), nn.Linear(c, c)
      self.conv = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                nn.ReLU())
      self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
      b, c, h, w = x.shape
      feat_h = x.permute(0, 3, 1, 2).contiguous().view(b * w, c, h)
      feat_w = x.permute(0, 2, 1, 3).contiguous().view(b * h, c, w)
      enc_h = self.conv1(F.avg_pool2d(x, [1, w]).view(b, c, h).permute(0, 2, 1))
      enc_w = self.conv2(F.avg_pool2d(x, [h, 1]).view(b, c, w).permute(0, 2, 1))
      a_h = torch.softmax(torch.matmul(feat_h, enc_h.repeat_interleave(w, 0)), -1)
      a_w = torch.softmax(torch.matmul(feat_w, enc_w.repeat_interleave(h, 0)), -1)
      aug_h = torch.bmm(a_h, feat_h).view(b, w, c, h).permute(0, 2, 3, 1)
      aug_w = torch.bmm(a_w, feat_w).view(b, h, c, w).permute(0, 2, 1, 3)
      return self.conv(self.gamma * (aug_h + aug_w) + x)

  def Output(cin, mid):  # noqa: N802 (official FLANetOutput: upsamples first)
    return output_head(cin, mid, num_classes, dropout, upsample=True)

  class FLANet(nn.Module):
    def __init__(self):
      super().__init__()
      chans = resnet.feature_channels(depth, width)
      self.backbone = deep_stem_resnet(depth, width)
      self.conv = nn.Sequential(nn.Conv2d(chans["c5"], channels, 3, 1, 1, bias=False),
                                nn.BatchNorm2d(channels), nn.ReLU(),
                                nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                nn.BatchNorm2d(channels), nn.ReLU())
      self.fully = FLA(channels)
      self.conv_out1 = Output(chans["c5"] + channels, channels)
      self.conv_out2 = Output(chans["c3"], aux_channels)
      self.conv_out3 = Output(chans["c4"], aux_channels)

    def forward(self, x, aux: bool = True):
      """{'out', 'aux1', 'aux2'} logits at 1/4 of the input (2x the 1/8 features)."""
      x1, x2, x3 = self.backbone(x)
      outs = {"out": self.conv_out1(torch.cat([x3, self.fully(self.conv(x3))], 1))}
      if aux:
        outs.update(aux1=self.conv_out2(x1), aux2=self.conv_out3(x2))
      return outs

  return FLANet()


def check(config):
  """Raises a one-line ValueError if `config` has no PyTorch peer here; builds nothing."""
  m = config.model
  bb = m.backbone
  if m.head in MMSEG_HEADS:
    if bb.stem != "v1c" or bb.get("multi_grid") or bb.get("avg_down"):
      raise ValueError(f"config.model.backbone: mmseg's ResNetV1c needs stem='v1c' and no "
                       f"multi_grid/avg_down; got stem={bb.stem!r}")
  elif m.head == "fla":
    if bb.stem != "deep" or bb.output_stride != 8:
      raise ValueError("--reference=torch for fla needs the official backbone: "
                       "config.model.backbone.stem='deep', output_stride=8")
  else:
    raise ValueError(f"--reference=torch: no PyTorch reference for model.head={m.head!r}; "
                     f"it covers {', '.join(REFERENCE_HEADS)}")


def build(config):
  """(torch module, outputs(net, x, train) -> dict of logits, description) for a config."""
  check(config)
  m = config.model
  if m.head in MMSEG_HEADS:
    import mmseg
    return (mmseg_segmentor(config), mmseg_outputs,
            f"mmseg {mmseg.__version__} EncoderDecoder, ResNetV1c-{m.backbone.depth}")
  bb, kw = m.backbone, dict(m.head_kwargs)  # fla: check() admits nothing else
  net = flanet(bb.depth, m.num_classes, bb.width, kw.get("channels", 512),
               kw.get("aux_channels", 64), kw.get("dropout", 0.1))
  return (net, lambda n, x, train: n(x, aux=train),
          f"torch FLANet (official model.py), deep-stem ResNet-{bb.depth}")


def benchmark(config, size, batch, steps=5, warmup=1, seed=0):
  """img/s of one SGD train step (the config's loss weights, CE with ignore 255 on logits
  resized to the label) and of inference (main output, resized, argmax) in PyTorch."""
  torch = import_torch()
  F = torch.nn.functional
  torch.manual_seed(seed)
  net, outputs, description = build(config)
  h, w = size
  rng = np.random.default_rng(seed)
  x = torch.from_numpy(rng.standard_normal((batch, 3, h, w)).astype(np.float32))
  label = torch.from_numpy(rng.integers(0, config.model.num_classes, (batch, h, w)))
  weights = dict(config.loss.weights)
  o = config.optim
  opt = torch.optim.SGD(net.parameters(), lr=o.lr, momentum=o.momentum,
                        weight_decay=o.weight_decay)
  resize = lambda t: F.interpolate(t, (h, w), mode="bilinear",
                                   align_corners=config.model.align_corners)

  def train_step():
    net.train()
    opt.zero_grad(set_to_none=True)
    outs = outputs(net, x, True)
    loss = sum(weights[k] * F.cross_entropy(resize(v), label, ignore_index=255)
               for k, v in outs.items() if weights.get(k))
    loss.backward()
    opt.step()

  def infer():
    net.eval()
    with torch.inference_mode():
      resize(outputs(net, x, False)["out"]).argmax(1)

  train_s = timing.median_seconds(train_step, steps, warmup, block=False)
  infer_s = timing.median_seconds(infer, steps, warmup, block=False)
  return {"reference": f"{description}, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads",
          "reference_train_img_per_s": batch / train_s,
          "reference_infer_img_per_s": batch / infer_s,
          "reference_train_step_s": train_s, "reference_infer_step_s": infer_s}
