"""DNLHead: Disentangled Non-Local (Yin et al., ECCV 2020), mmseg `dnl_head.py`,
attention-heads.md §7.3. (Not Denoised NL: that is heads/denoised_nl.py.)

Same wiring as NLHead; the block is mmseg `DisentangledNonLocal2d(reduction=2, use_scale=True,
temperature=0.05)`: NonLocal2d's body with a whitened pairwise term plus a unary term
(B, 1, 1, C/2) broadcast over the map and added to it, then the one zero-initialised
`conv_out` (1x1 conv + BN): `x + conv_out(y + unary)` (mmseg 1.2.2 `dnl_head.py`; checked
against it with converted weights in tests/test_convert.py).
"""
import jax
import jax.numpy as jnp

from flaseg.models.attention import spatial_attention
from flaseg.models.heads.fcn import FCNHead
from flaseg.models.heads.nl import NonLocal2d
from flaseg.models.layers import plain_conv
from flaseg.models.lowering import DEFAULT, Lowering


def dnl_attention(theta, phi, g, mask_logits, scale, temperature=0.05,
                  lowering: Lowering = DEFAULT):
  """The disentangled NL core: (pairwise (B, *S, E), unary (B, E)).

  pairwise = softmax_m((theta_n - mean theta) . (phi_m - mean phi) * scale / temperature) @ g,
  means over the positions (whitening), softmax over the keys in float32.
  unary = softmax_N(mask_logits) @ g with mask_logits (B, *S, 1) from `conv_mask`.
  """
  axes = tuple(range(1, theta.ndim - 1))
  theta = theta - theta.mean(axis=axes, keepdims=True)
  phi = phi - phi.mean(axis=axes, keepdims=True)
  pairwise = spatial_attention(theta, phi, g, scale / temperature, lowering)
  b = g.shape[0]
  mask = jax.nn.softmax(mask_logits.reshape(b, -1).astype(jnp.float32), axis=-1)
  unary = jnp.einsum("bn,bne->be", mask.astype(g.dtype), g.reshape(b, -1, g.shape[-1]))
  return pairwise, unary


class DisentangledNonLocal2d(NonLocal2d):
  """out = x + conv_out(pairwise + unary) (unary broadcast over H, W); `conv_mask` is a plain
  1x1 `nn.Conv2d(C, 1)`."""
  temperature: float = 0.05

  def aggregate(self, x, g, theta, phi, scale):
    mask_logits = plain_conv(1, x.shape[-1], self.dtype, "conv_mask", self.lowering)(x)
    pairwise, unary = dnl_attention(theta, phi, g, mask_logits, scale, self.temperature,
                                    self.lowering)
    return pairwise + unary[:, None, None, :]


class DNLHead(FCNHead):
  """mmseg DNLHead on 'c5': FCNHead with DisentangledNonLocal2d after convs_0, plus the aux
  head. Returns {'out', 'aux'}."""
  reduction: int = 2
  use_scale: bool = True
  temperature: float = 0.05
  aux_channels: int = 256

  def block(self, y, train):
    return DisentangledNonLocal2d(self.reduction, self.use_scale, self.dtype, self.lowering,
                                  temperature=self.temperature, name="dnl_block")(y, train)
