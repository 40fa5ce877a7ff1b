"""CS NL: an NL variant of FLANet's ablation (Song et al., AAAI 2022, Table 3).

Not in the official FLANet code (attention-heads.md §9). Channel NL then Spatial NL in series,
inside FLANet's head in place of the FLA block: y = x + gc * CAM(x); y = y + gs * PAM(y)
(DANet's channel and position attention: `danet.CAM`, `danet.PAM` with q/k 1x1 -> C/8 = 64
with bias, v 1x1 -> C with bias, no scaling), then one 3x3 conv + BN + ReLU. One conv after
both attentions keeps the block the same size as the FLA and Channel NL blocks (our reading;
the paper gives no layers).
"""
from flaseg.models.heads.danet import CAM, PAM
from flaseg.models.heads.fla import FLANetHead
from flaseg.models.layers import ConvBNReLU


class CSNLHead(FLANetHead):
  """FLANet head with a CS NL block: Channel NL then Spatial NL (FLANet Table 3 '+CS NL')."""
  pam_channels: int = 64  # C / 8 at C = 512

  def block(self, x, train):
    y = CAM(name="channel")(x)
    y = PAM(self.pam_channels, self.dtype, self.lowering, name="spatial")(y)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, lowering=self.lowering,
                      name="block_conv")(y, train)
