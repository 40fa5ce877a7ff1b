"""Channel NL: an NL variant of FLANet's ablation (Song et al., AAAI 2022, Table 3).

Not in the official FLANet code (attention-heads.md §9). flaseg builds it from verified DANet
(Fu et al., CVPR 2019) math inside FLANet's head, in place of the FLA block: y = x + gamma *
CAM(x) (DANet channel attention, softmax of X Xᵀ over channels with DANet's max - energy
trick; gamma init 0), then a 3x3 conv + BN + ReLU, i.e. the FLA block's skeleton with the
C x C map computed once per image instead of per row / column.
"""
from flaseg.models.heads.danet import CAM
from flaseg.models.heads.fla import FLANetHead
from flaseg.models.layers import ConvBNReLU


class ChannelNLHead(FLANetHead):
  """FLANet head with a Channel NL block (FLANet Table 3 '+Channel NL')."""

  def block(self, x, train):
    y = CAM(name="channel")(x)
    return ConvBNReLU(x.shape[-1], 3, dtype=self.dtype, lowering=self.lowering,
                      name="block_conv")(y, train)
