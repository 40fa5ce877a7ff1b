"""AttaNet's light head (Song, Mei, Huang, AAAI 2021): AFM and SAM at 1/8.

Reproduces songqi-github/AttaNet `AttaNet_light.py` (`AttaNetHead` without its backbone, and
the three `AttaNetOutput`s) on the light backbone's {'c3' (1/8, 64), 'c4' (1/16, 128),
's3_2' (1/16, 128)} (`flaseg/models/attanet_light.py`):

  feat16 = conv_head16(c4)                 feat8 = conv_head8(c3)         # 3x3 -> 64
  a      = AFM(feat8, feat16)                                             # (B, 1, 1, 64) gate
  fused  = conv_head81(feat8) * (1 - a) + up_nearest(conv_head161(feat16) * a)   # at 1/8
  out8   = conv_head2(SAM(conv_head1(fused)))                             # SAM at 1/8
  'out' = conv_out(out8), 'aux1' = conv_out1(up_nearest(conv_head161(feat16) * a)),
  'aux2' = conv_out2(s3_2)

Reuses AttaNet's `StripAttention`, `fuse` and `AttentionFusion`. Differences from AttaNet.py
(all the light file's): the AFM's first conv is 3x3 (`AttentionFusion(kernel=3)`), the fusion and
SAM run at 1/8, and `AttaNetOutput` has no Dropout2d (`dropout=0.0` here; set 0.1 to get
AttaNet.py's). Output modules are named `conv_out*` (the 10x LR regex 'head/conv_out').
Init: flaseg's `conv_init` (kaiming_normal a=1) for every conv; deviation: the original's
`init_weight` loops reach only `afm.conv_atten` and the `conv_out*.conv_out` classifiers,
the other convs keep torch's default init.
"""
import flax.linen as nn

from flaseg.models.heads.attanet import AttentionFusion, StripAttention, fuse
from flaseg.models.heads.head import Head
from flaseg.models.heads.outputs import OutputBlock
from flaseg.models.layers import ConvBNReLU


class AttaNetLightHead(Head):
  """AttaNet_light head; see the module docstring. Outputs 'out' (1/8), 'aux1' (1/8),
  'aux2' (1/16)."""
  FEATURES = ("c3", "c4", "s3_2")
  channels: int = 64
  qk_channels: int = 64
  out_channels: int = 64
  aux_channels: int = 64
  dropout: float = 0.0
  horizontal: bool = False

  def output(self, mid_channels, name):
    """`AttaNetOutput` of AttaNet_light.py: ConvBNReLU 3x3 -> 1x1 conv without bias."""
    return OutputBlock(self.num_classes, mid_channels, dropout=self.dropout, bias=False,
                       classifier="conv_out", **self.layer_kw, name=name)

  @nn.compact
  def __call__(self, feats, train: bool = False):
    ch, kw = self.channels, self.layer_kw
    feat16 = ConvBNReLU(ch, 3, **kw, name="conv_head16")(feats["c4"], train)
    feat8 = ConvBNReLU(ch, 3, **kw, name="conv_head8")(feats["c3"], train)
    atten = AttentionFusion(ch, kernel=3, **kw, name="afm")(feat8, feat16, train)
    feat16 = ConvBNReLU(ch, 3, **kw, name="conv_head161")(feat16, train)
    feat8 = ConvBNReLU(ch, 3, **kw, name="conv_head81")(feat8, train)
    fused, feat16_up = fuse(feat8, feat16, atten)
    fused = ConvBNReLU(ch, 3, **kw, name="conv_head1")(fused, train)
    fused = StripAttention(self.qk_channels, self.horizontal, **kw, name="sam")(fused, train)
    out8 = ConvBNReLU(ch, 3, **kw, name="conv_head2")(fused, train)
    return {"out": self.output(self.out_channels, "conv_out")(out8, train),
            "aux1": self.output(self.aux_channels, "conv_out1")(feat16_up, train),
            "aux2": self.output(self.aux_channels, "conv_out2")(feats["s3_2"], train)}
