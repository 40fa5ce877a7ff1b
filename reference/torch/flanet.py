"""The official FLANet (maggiesong7/FullyAttentional model.py) as torch modules.

* `deep_stem_resnet(depth, width, multi_grid)`: the official FLANet / DenoisedNL backbone.
* `output_head(...)`: their output module (FLANetOutput, DenoisedNL's Output).
* `fla_block(c, per_sample)`: the official `FullyAttentionalBlock`. By default its forward is
  the official one line for line, `encode_h.repeat(width, 1, 1)` included: the (B * W, C, H)
  columns are ordered (b, w), the repeated keys (w, b), so column w of sample b meets the keys
  of sample (b * W + w) % B, i.e. samples mix when B > 1 (B = 1: the paper's Eq. 2-4).
  `per_sample=True` uses `repeat_interleave` (every column with its own sample's keys, what
  flaseg computes; the same cost).
* `flanet(...)`: the official FLANet model.py's semantics (deep-stem dilated ResNet, FLA block,
  FLANetOutput heads) with its module names, for BasicBlock or Bottleneck backbones; its FLA
  block is `fla_block(channels, per_sample)`.
"""
from flaseg.models import resnet
from reference.torch.imports import import_torch


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


def fla_block(c: int, per_sample: bool = False):
  """The official `FullyAttentionalBlock(c)` as a torch module; see the module docstring."""
  torch = import_torch()
  nn, F = torch.nn, torch.nn.functional

  class FLA(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1, self.conv2 = nn.Linear(c, c), nn.Linear(c, c)
      self.conv = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                nn.ReLU())
      self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
      b, _, h, w = x.shape
      feat_h = x.permute(0, 3, 1, 2).contiguous().view(b * w, -1, h)
      feat_w = x.permute(0, 2, 1, 3).contiguous().view(b * h, -1, w)
      enc_h = self.conv1(F.avg_pool2d(x, [1, w]).view(b, -1, h).permute(0, 2, 1).contiguous())
      enc_w = self.conv2(F.avg_pool2d(x, [h, 1]).view(b, -1, w).permute(0, 2, 1).contiguous())
      if per_sample:
        keys_h, keys_w = enc_h.repeat_interleave(w, 0), enc_w.repeat_interleave(h, 0)
      else:  # the official code
        keys_h, keys_w = enc_h.repeat(w, 1, 1), enc_w.repeat(h, 1, 1)
      rel_h = torch.softmax(torch.matmul(feat_h, keys_h), -1)  # (b * w, c, c)
      rel_w = torch.softmax(torch.matmul(feat_w, keys_w), -1)
      aug_h = torch.bmm(rel_h, feat_h).view(b, w, -1, h).permute(0, 2, 3, 1)
      aug_w = torch.bmm(rel_w, feat_w).view(b, h, -1, w).permute(0, 2, 1, 3)
      return self.conv(self.gamma * (aug_h + aug_w) + x)

  return FLA()


def flanet(depth: int, num_classes: int, width: int = 64, channels: int = 512,
           aux_channels: int = 64, dropout: float = 0.1, per_sample: bool = False):
  """The official FLANet (model.py) as a torch module; see the module docstring."""
  torch = import_torch()
  nn = torch.nn

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
      self.fully = fla_block(channels, per_sample)
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
