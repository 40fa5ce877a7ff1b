"""Channel NL: FLANet's ablation block (Song et al., AAAI 2022, Table 3 '+Channel NL') in
FLANet's head: `fla_ablation.FLAAblationHead` with `block_type='channel_nl'`.

Not in the official FLANet code (attention-heads.md §9). FLANet defines Channel NL as the plain
C x C similarity of X and its transpose (no convolutions): y = x + gamma * softmax_d(X^T X) X
(gamma init 0), then a 3x3 ConvBNReLU, the FLA block's skeleton with the C x C map computed
once per image instead of per row / column (`fla_ablation.channel_nl_attention`). DANet's CAM
(softmax(max - energy)) stays in `danet`.
"""
from flaseg.models.heads.fla_ablation import FLAAblationHead


class ChannelNLHead(FLAAblationHead):
  """FLANet head with a Channel NL block (FLANet Table 3 '+Channel NL')."""
  block_type: str = "channel_nl"
