"""DF1 / DF2 of lxtGH/SFSegNets `network/dfnet.py` (`dfnetv1`, `dfnetv2`) as torch modules.

A transcription for the equivalence tests: the same modules, names and forward as the
original at its default `stride=32` (BatchNorm2d for its `norm_layer`; the unused `avgpool`
and the `stride=64` option are left out). `forward` returns dfnet.py's three maps: DF1
(stage3, stage4, stage5), DF2 (stage2_2, stage3_2, stage4_2).
"""

# variant -> [(stage name, planes, blocks, stride)], as the `_make_layer` calls of dfnet.py.
STAGES = {
    "df1": [("stage2", 64, 3, 2), ("stage3", 128, 3, 2), ("stage4", 256, 3, 2),
            ("stage5", 512, 1, 1)],
    "df2": [("stage2_1", 64, 2, 2), ("stage2_2", 128, 1, 1), ("stage3_1", 128, 10, 2),
            ("stage3_2", 256, 1, 1), ("stage4_1", 256, 4, 2), ("stage4_2", 512, 2, 1)],
}
# The stages whose outputs dfnet.py's forward returns.
RETURNS = {"df1": ("stage3", "stage4", "stage5"), "df2": ("stage2_2", "stage3_2", "stage4_2")}


def dfnet(torch, variant="df2"):
  """`dfnetv1()` (variant 'df1') or `dfnetv2()` ('df2')."""
  nn = torch.nn

  def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)

  class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1 = conv3x3(cin, planes, stride)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = conv3x3(planes, planes)
      self.bn2 = nn.BatchNorm2d(planes)
      self.downsample = downsample

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      shortcut = x if self.downsample is None else self.downsample(x)
      return torch.relu(y + shortcut)

  class DFNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.stage1 = nn.Sequential(
          nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
          nn.Conv2d(32, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
      cin = 64
      for name, planes, blocks, stride in STAGES[variant]:
        downsample = None
        if stride != 1 or cin != planes:
          downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes))
        layers = [BasicBlock(cin, planes, stride, downsample)]
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        setattr(self, name, nn.Sequential(*layers))
        cin = planes

    def forward(self, x):
      x = self.stage1(x)
      out = {}
      for name, *_ in STAGES[variant]:
        x = getattr(self, name)(x)
        out[name] = x
      return tuple(out[name] for name in RETURNS[variant])

  return DFNet()
