"""CS NL: FLANet's ablation block (Song et al., AAAI 2022, Table 3 '+CS NL') in FLANet's head:
`fla_ablation.FLAAblationHead` with `block_type='cs_nl'`.

Not in the official FLANet code (attention-heads.md §9). "The sequential Channel-Spatial NL":
FLANet's Channel NL (`fla_ablation.ChannelNL`, the plain C x C similarity) then Spatial NL
(DANet's position attention `danet.PAM`, q/k 1x1 -> 64, v 1x1 -> C, with bias, no scaling) in
series, then one 3x3 ConvBNReLU. One conv after both attentions keeps the block the same size
as the FLA and Channel NL blocks (our reading; the paper gives no layers).
"""
from flaseg.models.heads.fla_ablation import FLAAblationHead


class CSNLHead(FLAAblationHead):
  """FLANet head with a CS NL block: Channel NL then Spatial NL (FLANet Table 3 '+CS NL')."""
  block_type: str = "cs_nl"
