"""RecoNet: Tensor Low-Rank Reconstruction (Chen et al., ECCV 2020), `reconetHead`.

Reproduces CWanli/RecoNet `reconet.py` (attention-heads.md §8) on 'c5', plus the aux FCN:

  x = ConvBNReLU 3x3 (2048 -> 512)(layer4)
  TGM, rank R = 64: c_r = sigmoid(W^c_r GAP(x)) in R^C,  h_r in R^H,  w_r in R^W
  TRM: T = sum_r lambda_r c_r (x) h_r (x) w_r,  lambda = softmax(learnable, init ones)
       (`released=True`: 1/R, and the two spatial factors on each other's axes; below)
  y = cat[x, ReLU(x * T)] -> conv6: 1x1 (1024 -> 512) + BN + ReLU + Dropout2d 0.05 + 1x1 -> K
  aux = PyTorch-Encoding FCNHead(1024 -> 256 -> K) on layer3

Two forms of TGM/TRM (`released`):

  * `released=True`: the released (work-in-progress) file's computation, for an L x L map
    only (L = `profile_size`, 64 in the file: `dim // 8`): per rank, a dense L x L map (1x1
    conv taking the spatial length as channels, no bias, sigmoid) of the width profile
    (mean over C and H, the file's tensor `H`) and of the height profile (mean over C and
    W, its `W`); the reconstruction `bmm(bmm(C, H), W)` puts the WIDTH factor on the height
    axis and the height factor on the width axis: T[i, j, c] = sum_r lam_r c_r[c]
    w_r[i] h_r[j]; lambda = 1/R, fixed (the file re-softmaxes an unregistered tensor of ones,
    so it never trains and stays uniform). Tested against a transcription of the file
    (reference/torch/reconet.py) at its 64x64 map. The file's `conv1_2` is `width_kernel`,
    its `conv1_3` `height_kernel`.
  * `released=False` (default): flaseg's generalisation to any H, W, the paper's reading of
    the factors. The height profile (mean over C, W) goes on the H axis and the width profile
    on the W axis; the profiles are resampled to length L before the per-rank L x L maps and
    the results back to H (resp. W) afterwards, both bilinear with align_corners=True:
      h_r = resize_{L->H}(sigmoid(W^h_r resize_{H->L}(mean_{C,W} x))),  w_r likewise;
    lambda = softmax of a learnable parameter (init ones, so 1/R at the start). At
    H = W = L the resizes are the identity; the result still differs from the released file
    (the axis placement and the trained lambda), so this is not the original on any map.
  * The aux FCN head is flaseg's `auxiliary_head` (Dropout2d, classifier init N(0, 0.01))
    where PyTorch-Encoding uses element-wise Dropout(0.1) and the default conv init.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaseg.errors import ConfigError
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
  cat[x, ReLU(x * T)]. `released`: the released file's form (L x L maps only); see the module
  docstring for both forms."""
  rank: int = 64
  profile_size: int = 64
  released: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    _, height, width, c = x.shape
    r, l = self.rank, self.profile_size
    if self.released and (height, width) != (l, l):
      raise ConfigError(f"model.head_kwargs.released=True: the released RecoNet works on a "
                        f"profile_size x profile_size map ({l}x{l}), got {height}x{width}; "
                        f"set profile_size (crop / output stride) or released=False")
    w_c = self.param("channel_kernel", rank_init, (r, c, c), jnp.float32)
    w_h = self.param("height_kernel", rank_init, (r, l, l), jnp.float32)
    w_w = self.param("width_kernel", rank_init, (r, l, l), jnp.float32)
    if self.released:
      lam = jnp.full((r,), 1.0 / r, jnp.float32)
    else:
      lam = jax.nn.softmax(self.param("lam", nn.initializers.ones, (r,), jnp.float32))
    xf = x.astype(jnp.float32)
    c_r = jax.nn.sigmoid(jnp.einsum("bc,rcd->brd", xf.mean(axis=(1, 2)), w_c))
    # Profiles (B, L, 1) at the reference length L, mapped per rank, back to (B, R, H / W).
    prof_h = resize_profile(xf.mean(axis=(2, 3))[:, :, None], l)[..., 0]
    prof_w = resize_profile(xf.mean(axis=(1, 3))[:, :, None], l)[..., 0]
    h_r = jax.nn.sigmoid(jnp.einsum("bl,rlm->bmr", prof_h, w_h))
    w_r = jax.nn.sigmoid(jnp.einsum("bl,rlm->bmr", prof_w, w_w))
    if self.released:  # the width factor on the H axis, the height factor on the W axis
      h_r, w_r = w_r, h_r
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
  released: bool = False
  aux_channels: int = 256
  dropout: float = 0.05

  @nn.compact
  def __call__(self, feats, train: bool = False):
    x = feats["c5"]
    kw = self.layer_kw
    y = ConvBNReLU(self.channels, 3, **kw, name="feat")(x, train)
    y = TGMTRM(self.rank, self.profile_size, self.released, self.dtype, name="decomp")(y)
    y = ConvBNReLU(x.shape[-1] // 4, 1, **kw, name="conv6")(y, train)
    y = Dropout2d(self.dropout)(y, train)
    out = conv(self.num_classes, 1, bias=True, **kw, name="cls")(y)
    return {"out": out, "aux": auxiliary_head(self, feats, train, name="aux", dropout=0.1)}
