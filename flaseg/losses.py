"""Segmentation losses: cross-entropy with an ignore label and optional class weights, the
two published OHEMs, Lovász-softmax, and SANet's class-presence BCE. Pure functions of
(logits, labels); `total_loss` combines the model's outputs with the weights of `config.loss`.

Class weights (`config.loss.class_weights`): '' (none), comma-separated floats ('1,2.5,...',
or a list in a config file), or 'frequency': median frequency balancing (Eigen & Fergus,
2015) computed once from the training labels by `resolve_class_weights` and stored in
workdir/class_weights.json, which later runs (a resume) read instead of counting again.
"""
import concurrent.futures
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaseg.errors import ConfigError


def pixel_cross_entropy(logits, labels, ignore_label=255):
  """Per-pixel CE (B, H, W) in float32, 0 where the label is `ignore_label`; and the valid mask."""
  valid = labels != ignore_label
  safe = jnp.where(valid, labels, 0)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
  return jnp.where(valid, loss, 0.0), valid


def cross_entropy(logits, labels, ignore_label=255, avg_non_ignore=True, class_weights=None):
  """Mean CE over valid pixels (`avg_non_ignore=True`, torch `ignore_index` semantics), or over
  all pixels with ignored ones counting 0 (mmseg's default `avg_non_ignore=False`).

  With `class_weights` (K floats) pixel i counts w[y_i] times: sum(w[y_i] l_i) / sum(w[y_i])
  over valid pixels (torch's `weight=`), or sum(w[y_i] l_i) / all pixels (mmseg's
  `class_weight` with avg_non_ignore=False)."""
  loss, valid = pixel_cross_entropy(logits, labels, ignore_label)
  if class_weights is None:
    denom = jnp.maximum(valid.sum(), 1) if avg_non_ignore else loss.size
    return loss.sum() / denom
  w = jnp.asarray(class_weights, jnp.float32)[jnp.where(valid, labels, 0)] * valid
  denom = jnp.maximum(w.sum(), 1e-12) if avg_non_ignore else loss.size
  return (w * loss).sum() / denom


def lovasz_softmax(logits, labels, ignore_label=255):
  """Lovász-softmax (Berman, Triki & Blaschko, CVPR 2018), over all valid pixels of the batch
  (the official `per_image=False`), averaged over the classes present in `labels`.

  For class c with errors m_i = |[y_i = c] - p_i(c)| sorted in decreasing order, the loss is
  the Lovász extension of the Jaccard loss, sum_i m_(i) g_i, where g_i is the increase of
  1 - |F ∩ S_i| / |F ∪ S_i| (F the class's pixels, S_i the i largest errors' pixels) from
  the i-1 to the i first pixels. Ignored pixels get error -1, so they sort last and count 0.
  Memory: a (K, B*H*W) sort.
  """
  num_classes = logits.shape[-1]
  probs = jax.nn.softmax(logits.astype(jnp.float32), -1).reshape(-1, num_classes).T  # (K, N)
  labels = labels.reshape(-1)
  valid = labels != ignore_label
  fg = (labels[None, :] == jnp.arange(num_classes)[:, None]) & valid[None, :]
  errors = jnp.where(valid[None, :], jnp.abs(fg.astype(jnp.float32) - probs), -1.0)
  order = jnp.argsort(-errors, axis=1)
  errors_sorted = jnp.maximum(jnp.take_along_axis(errors, order, 1), 0.0)
  fg_sorted = jnp.take_along_axis(fg, order, 1).astype(jnp.float32)
  gts = fg_sorted.sum(1, keepdims=True)
  intersection = gts - jnp.cumsum(fg_sorted, 1)
  union = gts + jnp.cumsum(1.0 - fg_sorted, 1)
  jaccard = 1.0 - intersection / union
  grad = jnp.concatenate([jaccard[:, :1], jnp.diff(jaccard, axis=1)], axis=1)
  per_class = (errors_sorted * grad).sum(1)
  present = gts[:, 0] > 0
  return jnp.where(present, per_class, 0.0).sum() / jnp.maximum(present.sum(), 1)


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

  Dense outputs use CE (weighted by `cfg.class_weights`, resolved to numbers), or the OHEM
  `cfg.ohem` ('none' | 'attanet' | 'ccnet') for the names in `cfg.ohem_outputs` ('all' or a
  list), plus `cfg.lovasz_weight` x Lovász-softmax; per-image (B, K) outputs use
  `presence_bce`.
  """
  terms = {}
  total = 0.0
  weights = parse_class_weights(cfg.get("class_weights", ""))
  if weights == "frequency":
    raise ConfigError("config.loss.class_weights='frequency' is resolved from the training "
                      "labels by losses.resolve_class_weights before the loss is built")
  lovasz_weight = float(cfg.get("lovasz_weight", 0.0))
  for name, weight in cfg.weights.items():
    if name not in outputs:
      raise ConfigError(f"config.loss.weights names output {name!r}; the model returns "
                     f"{sorted(outputs)}")
    logits = outputs[name]
    if logits.ndim == 2:
      term = presence_bce(logits, labels, ignore_label)
    else:
      if cfg.ohem != "none" and (cfg.ohem_outputs == "all" or name in cfg.ohem_outputs):
        if weights:
          raise ConfigError(f"config.loss.class_weights with config.loss.ohem={cfg.ohem!r}: "
                            "OHEM outputs take no class weights; use one or the other")
        term = OHEMS[cfg.ohem](logits, labels, ignore_label, cfg.ohem_thresh,
                               cfg.ohem_min_kept)
      else:
        if weights and len(weights) != logits.shape[-1]:
          raise ConfigError(f"config.loss.class_weights has {len(weights)} weights; the model "
                            f"has {logits.shape[-1]} classes")
        term = cross_entropy(logits, labels, ignore_label, cfg.avg_non_ignore,
                             weights or None)
      if lovasz_weight:
        term = term + lovasz_weight * lovasz_softmax(logits, labels, ignore_label)
    terms[name] = term
    total = total + weight * term
  return total, terms


# Class weights.


def parse_class_weights(value):
  """config.loss.class_weights -> () (none), 'frequency', or a tuple of floats."""
  if isinstance(value, (list, tuple)):
    items = list(value)
  elif value is None or str(value).strip() == "":
    return ()
  elif str(value).strip() == "frequency":
    return "frequency"
  else:
    items = [v for v in str(value).strip("()[] ").split(",") if v.strip()]
  try:
    weights = tuple(float(v) for v in items)
  except (TypeError, ValueError):
    raise ConfigError(f"config.loss.class_weights={value!r}: expected '', 'frequency' or "
                      f"comma-separated numbers, one per class") from None
  if any(not math.isfinite(w) or w < 0 for w in weights):
    raise ConfigError(f"config.loss.class_weights={value!r}: weights must be finite and >= 0")
  return weights


def median_frequency_weights(pixels, image_pixels) -> np.ndarray:
  """Median frequency balancing (Eigen & Fergus, 2015): freq_c = pixels of class c / pixels
  of the images where c appears, w_c = median(freq) / freq_c (median over the classes that
  appear; a class absent from the labels gets 0, since no pixel ever carries it)."""
  pixels = np.asarray(pixels, np.float64)
  image_pixels = np.asarray(image_pixels, np.float64)
  present = pixels > 0
  if not present.any():
    raise ConfigError("config.loss.class_weights='frequency': the training labels have no "
                      "labelled pixel")
  freq = np.where(present, pixels / np.maximum(image_pixels, 1), 0.0)
  median = np.median(freq[present])
  return np.where(present, median / np.where(present, freq, 1.0), 0.0)


def count_label_pixels(source, num_classes: int, ignore_label: int, num_threads: int = 2):
  """(pixels per class, pixels of the images holding each class) over every example's label."""
  def count(i):
    label = np.asarray(source[i]["label"]).reshape(-1)
    c = np.bincount(label[label != ignore_label], minlength=num_classes)[:num_classes]
    return c, (c > 0) * label.size
  pixels = np.zeros(num_classes, np.int64)
  image_pixels = np.zeros(num_classes, np.int64)
  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    for c, n in pool.map(count, range(len(source))):
      pixels += c
      image_pixels += n
  return pixels, image_pixels


CLASS_WEIGHTS_FILE = "class_weights.json"


def resolve_class_weights(config, source, workdir: str, write: bool = True):
  """Replaces config.loss.class_weights='frequency' by the numbers (comma-separated): read
  from workdir/class_weights.json if there, else counted over `source` (the training split)
  and written there (`write`: process 0). Other values are checked and left as they are."""
  weights = parse_class_weights(config.loss.get("class_weights", ""))
  if weights != "frequency":
    return weights
  path = os.path.join(workdir, CLASS_WEIGHTS_FILE)
  if os.path.isfile(path):
    with open(path) as f:
      weights = tuple(json.load(f)["weights"])
    if len(weights) != config.model.num_classes:
      raise ConfigError(f"{path} has {len(weights)} class weights; the model has "
                        f"{config.model.num_classes} classes (delete it to count again)")
  else:
    pixels, image_pixels = count_label_pixels(source, config.model.num_classes,
                                              config.data.ignore_label,
                                              config.data.get("num_threads", 2))
    weights = tuple(float(w) for w in median_frequency_weights(pixels, image_pixels))
    if write:
      with open(path + ".tmp", "w") as f:
        json.dump({"method": "median_frequency", "weights": weights,
                   "pixels": pixels.tolist(), "image_pixels": image_pixels.tolist(),
                   "num_examples": len(source)}, f, indent=1)
      os.replace(path + ".tmp", path)
  with config.unlocked():
    config.loss.class_weights = ",".join(repr(w) for w in weights)
  return weights
