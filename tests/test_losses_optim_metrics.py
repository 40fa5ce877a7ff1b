"""Losses, optimizer and metrics against numpy re-implementations of the references."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from flaseg import config_lib, losses, metrics, optim
from flaseg.errors import ConfigError


def _np_ce(logits, labels, ignore=255):
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  valid = labels != ignore
  safe = np.where(valid, labels, 0)
  loss = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
  return np.where(valid, loss, 0.0), valid


def _data(seed=0, shape=(2, 6, 7), k=5, ignore_frac=0.2):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=shape + (k,)) * 2
  labels = rng.integers(0, k, shape)
  labels[rng.random(shape) < ignore_frac] = 255
  return logits.astype(np.float32), labels.astype(np.int32)


def test_cross_entropy_both_averagings():
  logits, labels = _data()
  loss, valid = _np_ce(logits.astype(np.float64), labels)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), loss.sum() / valid.sum(),
                             rtol=1e-5)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, avg_non_ignore=False),
                             loss.sum() / loss.size, rtol=1e-5)


@pytest.mark.parametrize("min_kept", [5, 40, 83])
def test_ohem_attanet_matches_sorted_reference(min_kept):
  """AttaNet loss.py: sort all losses descending; threshold -log(0.7) vs the n_min-th."""
  logits, labels = _data(1)
  loss, _ = _np_ce(logits.astype(np.float64), labels)
  srt = np.sort(loss.ravel())[::-1]
  th = -math.log(0.7)
  want = srt[srt > th].mean() if srt[min_kept] > th else srt[:min_kept].mean()
  np.testing.assert_allclose(losses.ohem_attanet(logits, labels, min_kept=min_kept), want,
                             rtol=1e-5)


@pytest.mark.parametrize("min_kept", [3, 30, 1000])
def test_ohem_ccnet_matches_reference(min_kept):
  """CCNet OhemCrossEntropy2d: keep valid pixels whose true-class prob <= max(0.7, kth)."""
  logits, labels = _data(2)
  loss, valid = _np_ce(logits.astype(np.float64), labels)
  prob = np.exp(-loss)[valid]
  if min_kept >= valid.sum():
    threshold = 1.0
  else:
    threshold = max(0.7, np.partition(prob, min_kept - 1)[min_kept - 1])
  keep = valid & (np.exp(-loss) <= threshold)
  np.testing.assert_allclose(losses.ohem_ccnet(logits, labels, min_kept=min_kept),
                             loss[keep].mean(), rtol=1e-5)


def test_presence_bce_and_total_loss_weights():
  logits, labels = _data(3)
  cls_logits = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
  present = np.stack([np.isin(np.arange(5), labels[b]) for b in range(2)]).astype(np.float64)
  p = 1 / (1 + np.exp(-cls_logits.astype(np.float64)))
  bce = -(present * np.log(p) + (1 - present) * np.log(1 - p)).mean()
  np.testing.assert_allclose(losses.presence_bce(cls_logits, labels), bce, rtol=1e-5)
  cfg = config_lib.base_config().loss
  cfg.weights = {"out": 1.0, "aux": 0.4, "se": 0.2}
  total, terms = losses.total_loss({"out": logits, "aux": logits * 0.5, "se": cls_logits},
                                   labels, cfg)
  np.testing.assert_allclose(total, terms["out"] + 0.4 * terms["aux"] + 0.2 * bce, rtol=1e-5)
  cfg.weights = {"missing": 1.0}
  with pytest.raises(ConfigError, match="missing"):
    losses.total_loss({"out": logits}, labels, cfg)


def _optim_cfg(**kw):
  cfg = config_lib.base_config().optim
  cfg.update(kw)
  return cfg


def test_poly_schedule_with_warmups():
  cfg = _optim_cfg(lr=0.01, end_lr=1e-4, poly_power=0.9)
  s = optim.lr_schedule(cfg, 100)
  for t in (0, 10, 50, 99, 100):
    np.testing.assert_allclose(s(t), (0.01 - 1e-4) * (1 - t / 100) ** 0.9 + 1e-4, rtol=1e-5)
  cfg = _optim_cfg(lr=0.01, warmup="exp", warmup_steps=10, warmup_start=1e-5)
  s = optim.lr_schedule(cfg, 110)
  np.testing.assert_allclose(s(5), 1e-5 * (0.01 / 1e-5) ** 0.5, rtol=1e-4)   # AttaNet
  np.testing.assert_allclose(s(10), 0.01, rtol=1e-5)
  np.testing.assert_allclose(s(60), 0.01 * (1 - 50 / 100) ** 0.9, rtol=1e-5)
  cfg = _optim_cfg(lr=0.01, warmup="linear", warmup_steps=10, warmup_ratio=0.1)
  s = optim.lr_schedule(cfg, 110)
  np.testing.assert_allclose(s(0), 0.001, rtol=1e-5)
  np.testing.assert_allclose(s(5), 0.001 + 0.009 * 0.5, rtol=1e-5)


def test_sgd_equals_torch_sgd_with_param_groups():
  """Three steps of torch.optim.SGD semantics written out in numpy: d = g + wd * p (only on
  decayed params), buf = m * buf + d, p -= lr_group * buf."""
  params = {"head": {"conv_out": {"kernel": np.ones((2, 2)), "bias": np.ones(2)}},
            "backbone": {"bn": {"scale": np.full(3, 2.0)}, "conv": {"kernel": np.full(4, 3.0)}}}
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  cfg = _optim_cfg(lr=0.1, momentum=0.9, weight_decay=0.01, no_decay_bn_bias=True,
                   lr_mult=ml_collections.ConfigDict({"head/conv_out": 10.0}))
  tx, sched = optim.make_optimizer(cfg, params, total_steps=10)
  state = tx.init(params)
  rng = np.random.default_rng(0)
  ref = jax.tree.map(np.asarray, params)
  buf = jax.tree.map(np.zeros_like, ref)
  p = params
  for t in range(3):
    grads = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32), ref)
    updates, state = tx.update(jax.tree.map(jnp.asarray, grads), state, p)
    p = jax.tree.map(lambda a, u: a + u, p, updates)
    lr = 0.1 * (1 - t / 10) ** 0.9
    flat_ref = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(ref)[0]:
      name = "/".join(k.key for k in path)
      flat_ref[name] = leaf
    new_ref, new_buf = {}, {}
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
      name = "/".join(k.key for k in path)
      w = flat_ref[name]
      wd = 0.01 if name.endswith("kernel") else 0.0
      mult = 10.0 if name.startswith("head/conv_out") else 1.0
      b = 0.9 * _get(buf, name) + g + wd * w
      new_buf[name], new_ref[name] = b, w - lr * mult * b
    ref, buf = _unflat(new_ref), _unflat(new_buf)
  for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
    name = "/".join(k.key for k in path)
    np.testing.assert_allclose(leaf, _get(ref, name), rtol=1e-5, err_msg=name)


def _get(tree, name):
  for k in name.split("/"):
    tree = tree[k]
  return tree


def _unflat(flat):
  out = {}
  for name, v in flat.items():
    d = out
    *parents, last = name.split("/")
    for k in parents:
      d = d.setdefault(k, {})
    d[last] = v
  return out


def test_confusion_matrix_and_miou_against_numpy():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, (3, 5, 6)); labels[0, 0] = 255
  pred = rng.integers(0, 4, (3, 5, 6))
  valid = np.array([True, True, False])
  cm = np.asarray(jax.jit(metrics.confusion_matrix, static_argnums=2)(pred, labels, 4, 255,
                                                                       valid))
  want = np.zeros((4, 4), np.int64)
  for b in range(2):
    for l, q in zip(labels[b].ravel(), pred[b].ravel()):
      if l != 255:
        want[l, q] += 1
  np.testing.assert_array_equal(cm, want)
  m = metrics.segmentation_metrics(want)
  iou = [want[k, k] / (want[k].sum() + want[:, k].sum() - want[k, k]) for k in range(4)]
  np.testing.assert_allclose(m["miou"], np.mean(iou))
  np.testing.assert_allclose(m["per_class_iou"], iou)
  np.testing.assert_allclose(m["pixel_acc"], np.trace(want) / want.sum())
  # a class absent from both ground truth and prediction is left out of the mean
  cm5 = np.zeros((5, 5), np.int64); cm5[:4, :4] = want
  assert metrics.segmentation_metrics(cm5)["per_class_iou"][4] is None
  np.testing.assert_allclose(metrics.segmentation_metrics(cm5)["miou"], np.mean(iou))
