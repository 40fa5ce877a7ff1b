"""Data parallelism: 8 devices give the same step as 1 device (global BN = SyncBN)."""
import jax
import numpy as np
import pytest

from flaseg import config_lib, optim, parallel, train
from flaseg.models import build_model, init_variables


def _setup(dtype):
  cfg = config_lib.load("configs/quickstart.py:smoke")
  cfg.model.dtype = dtype
  cfg.model.num_classes = 5
  cfg.loss.weights = {"out": 1.0, "aux1": 0.4, "aux2": 0.4}
  model = build_model(cfg.model)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (8, 32, 48, 3)).astype(np.uint8),
           "label": rng.integers(0, 5, (8, 32, 48)).astype(np.int32)}
  batch["label"][:, :3] = 255
  return cfg, model, batch


def _run(cfg, model, batch, devices, steps=1):
  mesh = parallel.make_mesh(devices)
  params, _ = init_variables(model, jax.random.key(0), (8, 32, 48, 3))
  tx, schedule = optim.make_optimizer(cfg.optim, params, 10)
  state = train.create_state(cfg, model, tx, mesh, (8, 32, 48, 3))
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)
  g = jax.jit(lambda s, b, r: train.loss_and_grads(model, cfg.loss, s.params, s.model_state, b, r),
              in_shardings=(repl, data, repl))
  fn, traces = train.make_train_step(model, tx, schedule, cfg.loss), []

  def counted(*args):
    traces.append(1)  # runs once per trace, i.e. per compilation
    return fn(*args)
  step = jax.jit(counted, in_shardings=(repl, data, repl), out_shardings=(repl, repl))
  gb = parallel.global_batch(batch, mesh)
  assert gb["image"].sharding.spec == jax.sharding.PartitionSpec("data")
  assert len(gb["image"].addressable_shards) == len(devices)
  (loss, (_, new_state)), grads = g(state, gb, jax.random.key(1))
  losses = []
  for _ in range(steps):
    state, m = step(state, gb, jax.random.key(1))
    losses.append(float(m["loss"]))
  return dict(loss=float(loss), grads=grads, stats=new_state, state=state, losses=losses,
              traces=len(traces))


def _assert_tree_close(a, b, rtol):
  """Per leaf, ||a - b|| <= rtol * ||b|| (relative error in the 2-norm)."""
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    err, ref = np.linalg.norm(x - y), max(np.linalg.norm(y), 1e-12)
    assert err <= rtol * ref, (jax.tree_util.keystr(path), err / ref)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-5), ("float32", 1e-4)])
def test_eight_devices_equal_one_device_and_compile_once(dtype, rtol):
  """Same global batch on 8 devices and on 1: same loss, gradients and BN statistics.

  In float32 the two programs sum in different orders (per-device partial sums, then an
  all-reduce), so BN-bias gradients differ by ~1e-5 relative; in float64 compute the
  difference is rounding of the float32 parameters only.
  """
  assert jax.device_count() == 8
  with jax.enable_x64(dtype == "float64"):
    cfg, model, batch = _setup(dtype)
    one = _run(cfg, model, batch, jax.devices()[:1])
    eight = _run(cfg, model, batch, jax.devices(), steps=3)
  np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-5)
  _assert_tree_close(eight["grads"], one["grads"], rtol)
  _assert_tree_close(eight["stats"], one["stats"], rtol)    # BN running statistics
  np.testing.assert_allclose(eight["losses"][0], one["losses"][0], rtol=1e-5)
  assert eight["traces"] == 1                                # 3 steps, one compilation
  # the state stays replicated on all 8 devices
  leaf = jax.tree.leaves(eight["state"].params)[0]
  assert leaf.sharding.is_fully_replicated and len(leaf.addressable_shards) == 8


def test_per_device_batch_norm_and_ohem_equal_ddp():
  """`train.per_device_batch_norm` + `loss.per_device` (AttaNet's DDP without SyncBN) against
  an independent DDP: each device's 2 images run alone on one device (their own BN statistics
  and OHEM selection), the 8 gradients are averaged with numpy and SGD applied to the mean; the
  new BN running statistics are device 0's (DDP's broadcast_buffers)."""
  cfg = config_lib.load("configs/quickstart.py:smoke")  # its ResNet-18, an FCN head (cheap)
  cfg.model.head, cfg.model.num_classes = "fcn", 5
  cfg.model.head_kwargs = {"channels": 16, "aux_channels": 8, "dropout": 0.5}  # dropout drawn
  cfg.loss.weights = {"out": 1.0, "aux": 0.4}                                  # per device
  cfg.loss.ohem, cfg.loss.ohem_min_kept = "attanet", 200  # OHEM on: the selection is per device
  model = build_model(cfg.model)
  cfg.loss.per_device = True
  rng = np.random.default_rng(1)
  batch = {"image": rng.integers(0, 256, (16, 32, 48, 3)).astype(np.uint8),
           "label": rng.integers(0, 5, (16, 32, 48)).astype(np.int32)}
  batch["label"][:, :3] = 255
  batch["label"][:2, 10:] = 255  # device 0 has fewer labelled pixels: means differ from global
  one = parallel.make_mesh(jax.devices()[:1])
  params, _ = init_variables(model, jax.random.key(0), (2, 32, 48, 3))
  tx, schedule = optim.make_optimizer(cfg.optim, params, 10)
  state = train.create_state(cfg, model, tx, one, (2, 32, 48, 3))
  g = jax.jit(lambda s, b, r: train.loss_and_grads(model, _global(cfg.loss), s.params,
                                                   s.model_state, b, r))
  key = jax.random.fold_in(jax.random.key(1), 0)  # the train step's key at step 0
  slices = [g(state, {k: v[2 * i:2 * i + 2] for k, v in batch.items()},
              jax.random.fold_in(key, i)) for i in range(8)]  # device i's dropout key
  ref_loss = np.mean([float(s[0][0]) for s in slices])
  ref_grads = jax.tree.map(lambda *gs: np.mean(np.stack(gs), 0), *[s[1] for s in slices])
  updates, _ = tx.update(ref_grads, state.opt_state, state.params)
  ref_params = jax.tree.map(lambda p, u: np.asarray(p) + np.asarray(u), state.params, updates)
  ref_stats = slices[0][0][1][1]

  mesh = parallel.make_mesh(jax.devices())
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)
  step = jax.jit(train.make_train_step(model, tx, schedule, cfg.loss, 255, mesh,
                                       per_device_batch_norm=True),
                 in_shardings=(repl, data, repl), out_shardings=(repl, repl))
  new, m = step(jax.device_put(state, repl), parallel.global_batch(batch, mesh), jax.random.key(1))
  np.testing.assert_allclose(float(m["loss"]), ref_loss, rtol=1e-5)
  _assert_tree_close(new.params, ref_params, 1e-5)
  _assert_tree_close(new.model_state, ref_stats, 1e-5)


def _global(loss_cfg):
  """`loss_cfg` with the loss over the whole batch given (one device: the reference)."""
  c = loss_cfg.copy_and_resolve_references()
  c.per_device = False
  return c
