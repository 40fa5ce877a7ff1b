"""The official light AttaNet (songqi-github/AttaNet `light.py` + `AttaNet_light.py`) as a
torch module, for the equivalence tests.

Same modules, names and forward: `head.backbone.branch.S1_1..S3_3` (light.py `Branch` inside
`Backbone`), `head.afm` (AFM with a 3x3 first conv), `head.conv_head8/16/81/161/1/2`,
`head.sam`, and the outputs `conv_out`, `conv_out1`, `conv_out2` (ConvBNReLU 3x3 -> 1x1 without
bias, no dropout), each bilinearly upsampled (align_corners=True) to the input. The
`init_weight` / `get_params` helpers are left out (the tests set every tensor).
"""


def attanet_light(torch, num_classes):
  """`AttaNet(n_classes)` of AttaNet_light.py."""
  nn, F = torch.nn, torch.nn.functional

  class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, ks=3, stride=1):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, ks, stride, ks // 2, bias=False)
      self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  class Branch(nn.Module):  # light.py
    def __init__(self):
      super().__init__()
      self.S1_1 = ConvBNReLU(3, 32, 7, 2)
      self.S1_2 = ConvBNReLU(32, 64, 3, 2)
      self.S2_1 = ConvBNReLU(64, 64, 3, 2)
      self.S2_2 = ConvBNReLU(64, 64)
      self.S2_3 = ConvBNReLU(64, 64)
      self.S3_1 = ConvBNReLU(64, 128, 3, 2)
      self.S3_2 = ConvBNReLU(128, 128)
      self.S3_3 = ConvBNReLU(128, 128)

    def forward(self, x):
      x = self.S2_2(self.S2_1(self.S1_2(self.S1_1(x))))
      feat8 = self.S2_3(x)
      feat = self.S3_2(self.S3_1(feat8))
      return feat8, self.S3_3(feat), feat

  class Backbone(nn.Module):
    def __init__(self):
      super().__init__()
      self.branch = Branch()

    def forward(self, x):
      return self.branch(x)

  class Output(nn.Module):
    def __init__(self, cin, mid):
      super().__init__()
      self.conv = ConvBNReLU(cin, mid)
      self.conv_out = nn.Conv2d(mid, num_classes, 1, bias=False)

    def forward(self, x):
      return self.conv_out(self.conv(x))

  class SAM(nn.Module):  # StripAttentionModule(in, out): q, k and v all `out` wide
    def __init__(self, cin, cout):
      super().__init__()
      self.conv1, self.conv2 = ConvBNReLU(cin, cout, 1), ConvBNReLU(cin, cout, 1)
      self.conv3 = ConvBNReLU(cin, cout, 1)

    def forward(self, x):
      q = self.conv1(x)
      b, cq, h, w = q.shape
      q = F.avg_pool2d(q, [h, 1]).view(b, cq, -1).permute(0, 2, 1)     # (B, W, cq)
      a = torch.softmax(torch.bmm(q, self.conv2(x).view(b, cq, -1)), 1)  # (B, W, H*W)
      v = self.conv3(x)
      c = v.shape[1]
      v = F.avg_pool2d(v, [h, 1]).view(b, c, -1)                        # (B, C, W)
      return x + torch.bmm(v, a).view(b, c, h, w)

  class AFM(nn.Module):  # AttentionFusionModule of AttaNet_light.py: 3x3 first conv
    def __init__(self, cin, cout):
      super().__init__()
      self.conv = ConvBNReLU(cin, cout, 3)
      self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
      self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, feat16, feat32):
      up = F.interpolate(feat32, feat16.shape[2:], mode="nearest")
      feat = self.conv(torch.cat([feat16, up], 1))
      atten = F.avg_pool2d(feat, feat.shape[2:])
      return torch.sigmoid(self.bn_atten(self.conv_atten(atten)))

  class Head(nn.Module):
    def __init__(self):
      super().__init__()
      self.backbone = Backbone()
      self.afm = AFM(128, 64)
      self.conv_head8 = ConvBNReLU(64, 64)
      self.conv_head16 = ConvBNReLU(128, 64)
      self.conv_head81 = ConvBNReLU(64, 64)
      self.conv_head161 = ConvBNReLU(64, 64)
      self.conv_head1 = ConvBNReLU(64, 64)
      self.sam = SAM(64, 64)
      self.conv_head2 = ConvBNReLU(64, 64)

    def forward(self, x):
      feat8, feat16, feat = self.backbone(x)
      feat16 = self.conv_head16(feat16)
      feat8 = self.conv_head8(feat8)
      atten = self.afm(feat8, feat16)
      feat16 = self.conv_head161(feat16) * atten
      feat16_up = F.interpolate(feat16, feat8.shape[2:], mode="nearest")
      fused = feat16_up + self.conv_head81(feat8) * (1 - atten)
      fused = self.conv_head2(self.sam(self.conv_head1(fused)))
      return fused, feat16_up, feat

  class AttaNetLight(nn.Module):
    def __init__(self):
      super().__init__()
      self.head = Head()
      self.conv_out = Output(64, 64)
      self.conv_out1 = Output(64, 64)
      self.conv_out2 = Output(128, 64)

    def forward(self, x):
      h, w = x.shape[2:]
      out, aux1, aux2 = self.head(x)
      up = lambda t: F.interpolate(t, (h, w), mode="bilinear", align_corners=True)
      return up(self.conv_out(out)), up(self.conv_out1(aux1)), up(self.conv_out2(aux2))

  return AttaNetLight()
