"""The official DenoisedNL (maggiesong7/DenoisedNL model.py) as a torch module, on the
official FLANet / DenoisedNL deep-stem backbone and output module (reference.torch.flanet)."""
from reference.torch.flanet import deep_stem_resnet, output_head


def denoised_nl(torch, width, channels, aux_channels, gr_channels, num_classes):
  """DenoisedNL (official model.py semantics: deep-stem ResNet-50 of Bottlenecks at output
  stride 8 with layer4 dilations (4, 8, 16), conv -> down_sample (BasicBlock, shortcut
  `interp`) -> DNL with the global rectifier and local retention -> outputs), its names."""
  nn, F = torch.nn, torch.nn.functional

  def cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())

  def Output(cin, mid):  # noqa: N802 (official Output: no upsampling, dropout 0.05)
    return output_head(cin, mid, num_classes, 0.05, upsample=False)

  class DownSample(nn.Module):
    def __init__(self, c, interp):
      super().__init__()
      self.conv1 = nn.Conv2d(c, c, 3, 2, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(c)
      self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(c)
      self.downsample = interp

    def forward(self, x):
      y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      return F.relu(y + self.downsample(x))

  class DNL(nn.Module):
    def __init__(self, c, c4):
      super().__init__()
      self.conv1 = nn.Conv2d(c, c // 8, 1, bias=False)
      self.conv2 = nn.Conv2d(c, c // 8, 1, bias=False)
      self.conv3 = nn.Conv2d(c, c, 1, bias=False)
      self.conv = cbr(c, c)
      self.conv_out3 = Output(c4, gr_channels)
      self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x, x2):
      b, _, h, w = x.shape
      q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
      e = q.shape[1]
      # Local relation: sigmoid(q . k) over each 3x3 neighbourhood (zero padded).
      k_patches = F.unfold(k, 3, padding=1).view(b, e, 9, h * w).permute(0, 3, 1, 2)
      local = torch.sigmoid(torch.matmul(q.permute(0, 2, 3, 1).reshape(b * h * w, 1, e),
                                         k_patches.reshape(b * h * w, e, 9)))
      qf = q.view(b, e, h * w).permute(0, 2, 1)
      relation = torch.softmax(torch.matmul(qf, k.view(b, e, h * w)), -1)
      aux2 = self.conv_out3(x2)
      pred = F.interpolate(aux2, (h, w), mode="bilinear", align_corners=True)
      pred = torch.softmax(pred, 1).view(b, num_classes, -1)
      relation = relation * torch.sigmoid(torch.matmul(pred.permute(0, 2, 1), pred))
      relation = F.unfold(relation.view(b, h * w, h, w), 3, padding=1).view(b, h * w, 9, h * w)
      local = local.view(b, h * w, 9).permute(0, 2, 1)
      aug_relation = (relation * local.unsqueeze(1)).sum(2)
      vf = v.view(b, -1, h * w).permute(0, 2, 1)
      aug = torch.bmm(aug_relation, vf).view(b, h, w, -1).permute(0, 3, 1, 2)
      out = F.interpolate(self.gamma * aug + x, (2 * h, 2 * w), mode="bilinear",
                          align_corners=True)
      return self.conv(out), aux2

  class DenoisedNL(nn.Module):
    def __init__(self):
      super().__init__()
      c5, c4, c3 = 32 * width, 16 * width, 8 * width
      # Deep stem, Bottlenecks, layer4 multi-grid (1, 2, 4) x dilation 4.
      self.backbone = deep_stem_resnet(50, width, multi_grid=(1, 2, 4))
      self.conv = cbr(c5, channels)
      self.interp = cbr(channels, channels, 2)
      self.down_sample = DownSample(channels, self.interp)
      self.dnl = DNL(channels, c4)
      self.conv_out1 = Output(c5 + channels, channels)
      self.conv_out2 = Output(c3, aux_channels)

    def forward(self, x):
      h, w = x.shape[2:]
      x1, x2, x3 = self.backbone(x)
      f, aux2 = self.dnl(self.down_sample(self.conv(x3)), x2)
      out = self.conv_out1(torch.cat([x3, f], 1))
      up = lambda t: F.interpolate(t, (h, w), mode="bilinear", align_corners=True)
      return up(out), up(self.conv_out2(x1)), up(aux2)

  return DenoisedNL()
