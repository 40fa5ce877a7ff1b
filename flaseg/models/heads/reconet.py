"""RecoNet: Tensor Low-Rank Reconstruction (Chen et al., ECCV 2020), `reconetHead`.

Reproduces CWanli/RecoNet `reconet.py` (attention-heads.md §8) on 'c5', plus the aux FCN:

  x = ConvBNReLU 3x3 (2048 -> 512)(layer4)
  TGM, rank R = 64: c_r = sigmoid(W^c_r GAP(x)) in R^C,  h_r in R^H,  w_r in R^W
  TRM: T = sum_r lambda_r c_r (x) h_r (x) w_r,  lambda = softmax(learnable, init ones)
  y = cat[x, ReLU(x * T)] -> conv6: 1x1 (1024 -> 512) + BN + ReLU + Dropout2d 0.05 + 1x1 -> K
  aux = PyTorch-Encoding FCNHead(1024 -> 256 -> K) on layer3

Deviations from the released (work-in-progress) file:
  * Spatial factors. The original pools x over (C, W) to a height profile (B, H) and over
    (C, H) to a width profile (B, W) and maps each with a per-rank 1x1 conv that takes the
    spatial length as channels: a dense L x L map, L = dim // 8 = 64 hard-coded, so only an
    L x L feature map works. flaseg keeps that dense per-rank map (params (R, L, L), no bias,
    kaiming fan_out init, sigmoid) but resamples the profile to length L first and the
    result back to H (resp. W) afterwards, both bilinear with align_corners=True:
      h_r = resize_{L->H}(sigmoid(W^h_r resize_{H->L}(mean_{C,W} x))),  w_r likewise.
    With H = W = L both resizes are the identity and the original map is reproduced; other
    sizes, H != W included, then work. `profile_size` sets L (64 in the original; set it to
    the training feature size, 97 for 769 crops at OS8, so training is exactly the original).
  * Axis order. The original's tensor `H` is x pooled over (C, H), i.e. the width profile,
    and it is placed on the first spatial axis: T[c, i, j] = c[c] w[i] h[j] (the width
    profile on the height axis), consistent only for square maps. flaseg puts the height
    profile (mean over C, W) on the H axis and the width profile on the W axis.
  * lambda. The original re-softmaxes an unregistered tensor, so lambda stays 1/R and is never
    trained; flaseg registers it as a parameter (init ones, softmax over ranks), as intended.
  * The aux FCN head is flaseg's `auxiliary_head` (Dropout2d, classifier init N(0, 0.01))
    where PyTorch-Encoding uses element-wise Dropout(0.1) and the default conv init.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.models.heads.fcn import auxiliary_head
from flaseg.models.heads.head import Head
from flaseg.models.layers import ConvBNReLU, Dropout2d, conv, resize_bilinear

Dtype = Any

# kaiming_normal_(mode='fan_out') on (R, in, out) kernels: std = sqrt(2 / out).
rank_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal", in_axis=-2, out_axis=-1,
                                             batch_axis=(0,))


def resize_profile(p, size: int):
  """Linear resize (align_corners=True) of profiles (B, L, R) along L to `size`."""
  return resize_bilinear(p[:, :, None, :], (size, 1), align_corners=True)[:, :, 0, :]


def low_rank_tensor(lam, c, h, w):
  """TRM: T[b, y, x, ch] = sum_r lam[r] c[b, r, ch] h[b, r, y] w[b, r, x], NHWC."""
  return jnp.einsum("r,brc,bry,brx->byxc", lam, c, h, w)


class TGMTRM(nn.Module):
  """Tensor generation (rank-`rank` sigmoid factors) and reconstruction; returns
  cat[x, ReLU(x * T)]. See the module docstring for the spatial-factor generalisation."""
  rank: int = 64
  profile_size: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _, height, width, c = x.shape
    r, l = self.rank, self.profile_size
    w_c = self.param("channel_kernel", rank_init, (r, c, c), jnp.float32)
    w_h = self.param("height_kernel", rank_init, (r, l, l), jnp.float32)
    w_w = self.param("width_kernel", rank_init, (r, l, l), jnp.float32)
    lam = jax.nn.softmax(self.param("lam", nn.initializers.ones, (r,), jnp.float32))
    xf = x.astype(jnp.float32)
    c_r = jax.nn.sigmoid(jnp.einsum("bc,rcd->brd", xf.mean(axis=(1, 2)), w_c))
    # Profiles (B, L, 1) at the reference length L, mapped per rank, back to (B, R, H / W).
    prof_h = resize_profile(xf.mean(axis=(2, 3))[:, :, None], l)[..., 0]
    prof_w = resize_profile(xf.mean(axis=(1, 3))[:, :, None], l)[..., 0]
    h_r = jax.nn.sigmoid(jnp.einsum("bl,rlm->bmr", prof_h, w_h))
    w_r = jax.nn.sigmoid(jnp.einsum("bl,rlm->bmr", prof_w, w_w))
    h_r = resize_profile(h_r, height).transpose(0, 2, 1)
    w_r = resize_profile(w_r, width).transpose(0, 2, 1)
    t = low_rank_tensor(lam, c_r, h_r, w_r).astype(x.dtype)
    return jnp.concatenate([x, nn.relu(x * t)], -1)


class RecoNetHead(Head):
  """RecoNet head on 'c5' with the aux FCN head on 'c4'. Outputs 'out' and 'aux'."""
  FEATURES = ("c4", "c5")
  channels: int = 512
  rank: int = 64
  profile_size: int = 64
  aux_channels: int = 256
  dropout: float = 0.05

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats["c5"]
    kw = self.layer_kw
    y = ConvBNReLU(self.channels, 3, **kw, name="feat")(x, train)
    y = TGMTRM(self.rank, self.profile_size, self.dtype, name="decomp")(y)
    y = ConvBNReLU(x.shape[-1] // 4, 1, **kw, name="conv6")(y, train)
    y = Dropout2d(self.dropout)(y, train)
    out = conv(self.num_classes, 1, bias=True, **kw, name="cls")(y)
    return {"out": out, "aux": auxiliary_head(self, feats, train, name="aux", dropout=0.1)}
