"""RecoNet's TGM/TRM as released (CWanli/RecoNet reconet.py `TGMandTRM`) as a torch module.

`tgm_trm(torch, channels, h, rank)`: the file's forward with its width (`channels`, 512 in the
file) and rank (64) as arguments; `h` is its map side (`dim // 8`, 64). As the file: the
pooled tensor named `H` is x averaged over (C, H), i.e. one value per column (the width
profile), `W` one value per row; per rank a 1x1 conv + sigmoid (no bias) maps C, `H` and `W`;
`bmm(bmm(C, H), W)` reconstructs (b, c, h, h) with the `H` (width) factor on the first spatial
axis; `lam` is a plain tensor of ones re-softmaxed at every call (so 1/R, untrained); the
output is cat[x, relu(x * T)]. It works on an h x h map only.
"""


def tgm_trm(torch, channels: int = 512, h: int = 64, rank: int = 64):
  nn, F = torch.nn, torch.nn.functional

  def factors(width):
    return nn.ModuleList([nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.Sigmoid())
                          for _ in range(rank)])

  class TGMandTRM(nn.Module):
    def __init__(self):
      super().__init__()
      self.rank, self.h = rank, h
      self.conv1_1, self.conv1_2, self.conv1_3 = factors(channels), factors(h), factors(h)
      self.lam = torch.ones(rank, requires_grad=True)  # not a Parameter, as the file
      self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
      b = x.shape[0]
      c_in = self.pool(x)
      h_in = self.pool(x.permute(0, 3, 1, 2).contiguous())  # (b, W, 1, 1): per column
      w_in = self.pool(x.permute(0, 2, 3, 1).contiguous())  # (b, H, 1, 1): per row
      self.lam = F.softmax(self.lam, -1)
      lam = torch.chunk(self.lam, dim=0, chunks=self.rank)
      tensor = sum(lam[i] * self.reconstruct(b, self.conv1_1[i](c_in), self.conv1_2[i](h_in),
                                             self.conv1_3[i](w_in)) for i in range(self.rank))
      return torch.cat((x, F.relu(x * tensor)), 1)

    def reconstruct(self, b, feat, feat2, feat3):
      """The file's `TukerReconstruction` with its pool size 1."""
      c = feat.view(b, -1, 1)
      hh = feat2.view(b, 1, -1)
      ww = feat3.view(b, 1, -1)
      return torch.bmm(torch.bmm(c, hh).view(b, -1, 1), ww).view(b, -1, self.h, self.h)

  return TGMandTRM()
