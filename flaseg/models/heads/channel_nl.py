"""Channel NL and CS NL: the NL variants of FLANet's ablation (Song et al., AAAI 2022, Table 3).

Neither variant is in the official FLANet code (attention-heads.md §9). flaseg builds them from
verified DANet (Fu et al., CVPR 2019) math inside FLANet's head, in place of the FLA block:

  * Channel NL: y = x + gamma * CAM(x) (DANet channel attention, softmax of X Xᵀ over channels
    with DANet's max - energy trick; gamma init 0), then a 3x3 conv + BN + ReLU, i.e. the FLA
    block's skeleton with the C x C map computed once per image instead of per row / column.
  * CS NL: Channel NL then Spatial NL in series: y = x + gc * CAM(x); y = y + gs * PAM(y)
    (DANet position attention, q/k 1x1 -> C/8 = 64 with bias, v 1x1 -> C with bias, no
    scaling), then one 3x3 conv + BN + ReLU. One conv after both attentions keeps the block
    the same size as the FLA and Channel NL blocks (our reading; the paper gives no layers).
The attention cores and modules are DANet's (`danet.CAM`, `danet.PAM`).
"""
from flaseg.models.heads.danet import CAM, PAM
from flaseg.models.heads.fla import FLASkeletonHead
from flaseg.models.layers import ConvBNReLU

class ChannelNLHead(FLASkeletonHead):
  """FLANet head with a Channel NL block (FLANet Table 3 '+Channel NL')."""

  def block(self, x, train):
    y = CAM(name="channel")(x)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, name="block_conv")(y, train)


class CSNLHead(FLASkeletonHead):
  """FLANet head with a CS NL block: Channel NL then Spatial NL (FLANet Table 3 '+CS NL')."""
  pam_channels: int = 64  # C / 8 at C = 512

  def block(self, x, train):
    y = CAM(name="channel")(x)
    y = PAM(self.pam_channels, self.dtype, name="spatial")(y)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, name="block_conv")(y, train)
