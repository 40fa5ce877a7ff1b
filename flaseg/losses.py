"""Segmentation losses: cross-entropy with an ignore label, the two published OHEMs, and
SANet's class-presence BCE. Pure functions of (logits, labels); `total_loss` combines the
model's outputs with the weights of `config.loss`."""
import math

import jax
import jax.numpy as jnp
import optax

from flaseg.errors import ConfigError


def pixel_cross_entropy(logits, labels, ignore_label=255):
  """Per-pixel CE (B, H, W) in float32, 0 where the label is `ignore_label`; and the valid mask."""
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  return jnp.where(valid, loss, 0.0), valid


def cross_entropy(logits, labels, ignore_label=255, avg_non_ignore=True):
  """Mean CE over valid pixels (`avg_non_ignore=True`, torch `ignore_index` semantics), or over
  all pixels with ignored ones counting 0 (mmseg's default `avg_non_ignore=False`)."""
  loss, valid = pixel_cross_entropy(logits, labels, ignore_label)
  denom = jnp.maximum(valid.sum(), 1) if avg_non_ignore else loss.size
  return loss.sum() / denom


def ohem_attanet(logits, labels, ignore_label=255, thresh=0.7, min_kept=100000):
  """AttaNet `OhemCELoss` (loss.py): thresholds the per-pixel CE at -log(thresh).

  Over all B*H*W pixels (ignored ones count as loss 0 and stay in the list), sorted
  descending: if the `min_kept`-th loss exceeds the threshold, the mean of all losses above it,
  else the mean of the top `min_kept`. `min_kept` counts over the whole (global) batch.
  """
  loss, _ = pixel_cross_entropy(logits, labels, ignore_label)
  flat = loss.reshape(-1)
  k = min(int(min_kept), flat.size - 1)
  top = jax.lax.top_k(flat, k + 1)[0]
  th = -math.log(thresh)
  hard = flat > th
  mean_hard = jnp.where(hard, flat, 0.0).sum() / jnp.maximum(hard.sum(), 1)
  return jnp.where(top[k] > th, mean_hard, top[:k].mean())


def ohem_ccnet(logits, labels, ignore_label=255, thresh=0.7, min_kept=100000):
  """CCNet `OhemCrossEntropy2d` / mmseg `OHEMPixelSampler`: thresholds the probability of the
  true class. Keeps valid pixels with p <= max(thresh, p of the `min_kept`-th hardest valid
  pixel) (all valid pixels when there are fewer than `min_kept`); mean CE over those."""
  loss, valid = pixel_cross_entropy(logits, labels, ignore_label)
  prob = jnp.exp(-loss)  # softmax probability of the true class
  prob = jnp.where(valid, prob, jnp.inf).reshape(-1)
  k = min(int(min_kept), prob.size)
  kth = -jax.lax.top_k(-prob, k)[0][k - 1]  # k-th smallest probability (inf if too few valid)
  threshold = jnp.maximum(thresh, kth)
  keep = valid.reshape(-1) & (prob <= threshold)
  return jnp.where(keep, loss.reshape(-1), 0.0).sum() / jnp.maximum(keep.sum(), 1)


def presence_bce(logits, labels, ignore_label=255):
  """SANet/EncNet SE loss: BCE of per-image class logits (B, K) against class presence."""
  num_classes = logits.shape[-1]
  onehot = (labels[..., None] == jnp.arange(num_classes)) & (labels[..., None] != ignore_label)
  present = onehot.any(axis=(1, 2)).astype(jnp.float32)
  return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), present).mean()


OHEMS = {"attanet": ohem_attanet, "ccnet": ohem_ccnet}


def total_loss(outputs, labels, cfg, ignore_label=255):
  """Weighted sum over `cfg.weights` ({output name: weight}) of config.loss `cfg`, with
  `ignore_label` (config.data.ignore_label); returns (loss, {name: loss}).

  Dense outputs use CE, or the OHEM `cfg.ohem` ('none' | 'attanet' | 'ccnet') for the names in
  `cfg.ohem_outputs` ('all' or a list); per-image (B, K) outputs use `presence_bce`.
  """
  terms = {}
  total = 0.0
  for name, weight in cfg.weights.items():
    if name not in outputs:
      raise ConfigError(f"config.loss.weights names output {name!r}; the model returns "
                     f"{sorted(outputs)}")
    logits = outputs[name]
    if logits.ndim == 2:
      term = presence_bce(logits, labels, ignore_label)
    elif cfg.ohem != "none" and (cfg.ohem_outputs == "all" or name in cfg.ohem_outputs):
      term = OHEMS[cfg.ohem](logits, labels, ignore_label, cfg.ohem_thresh, cfg.ohem_min_kept)
    else:
      term = cross_entropy(logits, labels, ignore_label, cfg.avg_non_ignore)
    terms[name] = term
    total = total + weight * term
  return total, terms
