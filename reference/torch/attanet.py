"""The official AttaNet (songqi-github/AttaNet AttaNet.py) as a torch module; `head.decode`
is its head's forward after the backbone (for the head-only test)."""


def attanet(torch, torchvision, num_classes):
  """AttaNet (official AttaNet.py semantics; torchvision ResNet-18 as `head.resnet`)."""
  nn, F = torch.nn, torch.nn.functional

  class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, ks=3):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, ks, 1, ks // 2, bias=False)
      self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  class Output(nn.Module):
    def __init__(self, cin, mid):
      super().__init__()
      self.conv = ConvBNReLU(cin, mid)
      self.conv_out = nn.Conv2d(mid, num_classes, 1, bias=False)

    def forward(self, x):
      return self.conv_out(self.conv(x))

  class SAM(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.conv1, self.conv2 = ConvBNReLU(c, 64, 1), ConvBNReLU(c, 64, 1)
      self.conv3 = ConvBNReLU(c, c, 1)

    def forward(self, x):
      q = self.conv1(x)
      b, cm, h, w = q.shape
      q = F.avg_pool2d(q, [h, 1]).view(b, cm, -1).permute(0, 2, 1)
      a = torch.softmax(torch.bmm(q, self.conv2(x).view(b, cm, -1)), 1)
      v = F.avg_pool2d(self.conv3(x), [h, 1]).view(b, x.shape[1], -1)
      return x + torch.bmm(v, a).view(b, x.shape[1], h, w)

  class AFM(nn.Module):
    def __init__(self, cin, cout):
      super().__init__()
      self.conv = ConvBNReLU(cin, cout, 1)
      self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
      self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, f16, f32):
      up = F.interpolate(f32, f16.shape[2:], mode="nearest")
      feat = self.conv(torch.cat([f16, up], 1))
      return torch.sigmoid(self.bn_atten(self.conv_atten(F.avg_pool2d(feat, feat.shape[2:]))))

  class Head(nn.Module):
    def __init__(self):
      super().__init__()
      self.resnet = torchvision.models.resnet18()
      self.afm = AFM(640, 128)
      self.conv_head32 = ConvBNReLU(512, 128)
      self.conv_head16 = ConvBNReLU(256, 128)
      self.conv_head1 = ConvBNReLU(128, 128)
      self.sam = SAM(128)
      self.conv_head2 = ConvBNReLU(128, 128)

    def forward(self, x):
      r = self.resnet
      x = r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))
      f8 = r.layer2(x)
      f16 = r.layer3(f8)
      return self.decode(f8, f16, r.layer4(f16))

    def decode(self, f8, f16, f32):
      """The official forward after the backbone: (out8, f32_up, f8)."""
      f16 = self.conv_head16(f16)
      atten = self.afm(f16, f32)
      f32_up = F.interpolate(self.conv_head32(f32) * atten, f16.shape[2:], mode="nearest")
      fused = self.sam(self.conv_head1(f16 * (1 - atten) + f32_up))
      out8 = self.conv_head2(F.interpolate(fused, f8.shape[2:], mode="nearest"))
      return out8, f32_up, f8

  class AttaNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.head = Head()
      self.conv_out = Output(128, 128)
      self.conv_out1 = Output(128, 64)
      self.conv_out2 = Output(128, 64)

    def forward(self, x):
      h, w = x.shape[2:]
      out, aux1, aux2 = self.head(x)
      up = lambda t: F.interpolate(t, (h, w), mode="bilinear", align_corners=True)
      return up(self.conv_out(out)), up(self.conv_out1(aux1)), up(self.conv_out2(aux2))

  return AttaNet()
