"""Class-weighted cross-entropy, median-frequency class weights and Lovász-softmax, each
against an independent numpy reference."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import config_lib, losses
from flaseg.errors import ConfigError


def _data(seed=0, b=2, h=5, w=6, k=4, ignore_frac=0.2):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2, (b, h, w, k)).astype(np.float32)
  labels = rng.integers(0, k, (b, h, w))
  labels[rng.random((b, h, w)) < ignore_frac] = 255
  return logits, labels


def _np_log_softmax(x):
  x = x.astype(np.float64)
  return x - x.max(-1, keepdims=True) - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1,
                                                                                      keepdims=True))


def test_weighted_cross_entropy_against_a_loop():
  logits, labels = _data()
  weights = [0.5, 2.0, 1.0, 3.0]
  logp = _np_log_softmax(logits)
  num = den = 0.0
  for idx in np.ndindex(labels.shape):
    y = labels[idx]
    if y != 255:
      num += -weights[y] * logp[idx][y]
      den += weights[y]
  got = losses.cross_entropy(logits, labels, class_weights=weights)
  np.testing.assert_allclose(got, num / den, rtol=1e-5)                  # torch's weight=
  got = losses.cross_entropy(logits, labels, avg_non_ignore=False, class_weights=weights)
  np.testing.assert_allclose(got, num / labels.size, rtol=1e-5)         # mmseg's class_weight
  # all weights 1 is the unweighted loss
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, class_weights=[1.0] * 4),
                             losses.cross_entropy(logits, labels), rtol=1e-6)


def lovasz_reference(probs, labels, ignore=255):
  """Berman et al. (2018), from the definitions: for each class c present, the Lovász
  extension of the Jaccard loss Δ(S) = |S| / |F ∪ S| (F: the class's pixels, S: a set of
  mispredicted pixels) at the error vector m = |[y = c] - p(c)|, i.e. the sum over the
  pixels in decreasing order of m of m_i (Δ(first i) - Δ(first i-1)); mean over classes."""
  probs = probs.reshape(-1, probs.shape[-1]).astype(np.float64)
  labels = labels.reshape(-1)
  keep = labels != ignore
  probs, labels = probs[keep], labels[keep]
  out = []
  for c in range(probs.shape[1]):
    fg = set(np.flatnonzero(labels == c))
    if not fg:
      continue
    m = np.abs((labels == c).astype(np.float64) - probs[:, c])
    order = sorted(range(len(m)), key=lambda i: -m[i])
    delta = lambda s: len(s) / len(fg | s) if s else 0.0
    total, chosen = 0.0, set()
    for i in order:
      before = delta(chosen)
      chosen = chosen | {i}
      total += m[i] * (delta(chosen) - before)
    out.append(total)
  return float(np.mean(out)) if out else 0.0


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lovasz_softmax_against_the_definition(seed):
  logits, labels = _data(seed, k=5)
  labels[labels == 3] = 4  # class 3 absent: not averaged in
  got = float(losses.lovasz_softmax(logits, labels))
  np.testing.assert_allclose(got, lovasz_reference(_softmax(logits.astype(np.float64)),
                                                   labels), rtol=1e-5, atol=1e-6)


def test_lovasz_softmax_is_the_jaccard_loss_at_hard_predictions():
  """At one-hot probabilities the extension equals the set function: the mean over present
  classes of 1 - IoU."""
  _, labels = _data(3, k=3)
  pred = np.random.default_rng(4).integers(0, 3, labels.shape)
  logits = 60.0 * np.eye(3)[pred]  # softmax is one-hot to float32 precision
  valid = labels != 255
  ious = []
  for c in range(3):
    if (labels == c).any():
      inter = ((pred == c) & (labels == c) & valid).sum()
      union = (((pred == c) | (labels == c)) & valid).sum()
      ious.append(inter / union)
  np.testing.assert_allclose(float(losses.lovasz_softmax(logits, labels)), 1 - np.mean(ious),
                             rtol=1e-6)
  # and its gradient exists and is finite (it trains)
  g = jax.grad(lambda x: losses.lovasz_softmax(x, labels))(jnp.asarray(_data(3, k=3)[0]))
  assert np.isfinite(g).all() and np.abs(g).sum() > 0


def test_total_loss_adds_lovasz_and_checks_class_weights():
  logits, labels = _data(5, k=3)
  cfg = config_lib.base_config().loss
  cfg.weights = {"out": 1.0}
  cfg.class_weights = "1,2,0.5"
  cfg.lovasz_weight = 0.25
  total, terms = losses.total_loss({"out": jnp.asarray(logits)}, labels, cfg)
  expected = (losses.cross_entropy(logits, labels, class_weights=[1, 2, 0.5])
              + 0.25 * lovasz_reference(_softmax(logits.astype(np.float64)), labels))
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  cfg.class_weights = "1,2"
  with pytest.raises(ConfigError, match="class_weights has 2 weights; the model has 3"):
    losses.total_loss({"out": jnp.asarray(logits)}, labels, cfg)
  cfg.class_weights = "1,2,3"
  cfg.ohem = "ccnet"
  with pytest.raises(ConfigError, match="OHEM outputs take no class weights"):
    losses.total_loss({"out": jnp.asarray(logits)}, labels, cfg)
  for bad in ("1,x", "-1,1,1"):
    with pytest.raises(ConfigError, match="config.loss.class_weights"):
      losses.parse_class_weights(bad)


class _Labels:
  """A source of given labels; reading it after `forbid()` fails (to prove a cache is read)."""

  def __init__(self, labels):
    self.labels, self.forbidden = labels, False

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    assert not self.forbidden, "the labels were counted again"
    return {"label": self.labels[i]}


def test_frequency_weights_counted_once_and_stored(tmp_path):
  # 3 images of 10 pixels: class 0 in all (20 px), class 1 in image 0 (2 px), class 2 in
  # images 1-2 (6 px), 2 ignored pixels; class 3 never appears.
  labels = [np.array([0] * 8 + [1] * 2), np.array([0] * 6 + [2] * 2 + [255] * 2),
            np.array([0] * 6 + [2] * 4)]
  freq = np.array([20 / 30, 2 / 10, 6 / 20])   # pixels / pixels of the images holding it
  median = np.median(freq)
  expected = [median / freq[0], median / freq[1], median / freq[2], 0.0]
  config = config_lib.base_config()
  config.model.num_classes = 4
  config.loss.class_weights = "frequency"
  source = _Labels(labels)
  got = losses.resolve_class_weights(config, source, str(tmp_path))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  assert [float(v) for v in config.loss.class_weights.split(",")] == pytest.approx(expected)
  with open(tmp_path / "class_weights.json") as f:
    stored = json.load(f)
  assert stored["pixels"] == [20, 2, 6, 0] and stored["method"] == "median_frequency"
  # a second run (a resume) reads the file instead of counting
  source.forbidden = True
  config.loss.class_weights = "frequency"
  np.testing.assert_allclose(losses.resolve_class_weights(config, source, str(tmp_path)),
                             expected, rtol=1e-12)
  config.model.num_classes = 5
  config.loss.class_weights = "frequency"
  with pytest.raises(ConfigError, match="has 4 class weights; the model has 5 classes"):
    losses.resolve_class_weights(config, source, str(tmp_path))
  assert os.path.isfile(tmp_path / "class_weights.json")
