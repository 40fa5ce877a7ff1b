"""Train-step and inference throughput of any config, on whatever devices JAX sees.

  python scripts/benchmark.py --config=configs/fla_cityscapes.py --size=512x512 --batch=2 \
      --backbone=resnet50 --json
  python scripts/benchmark.py --config=configs/quickstart.py --json   # the config's crop/batch

Reports one JSON object: train_img_per_s, infer_img_per_s, peak_memory_mb (device peak where
the backend reports it, else XLA's compiled temp + argument + output sizes — on CPU a lower
bound, since library fusions hide their buffers; scripts/cost.py compiles without them),
params, the XLA-counted GFLOP of each compiled step (what executes) and their rate as a
fraction of this device's measured n^3 matmul rate (`--matmul`), the model GFLOP of each step
(convolutions counted as the direct conv, as GPU/TPU run them and papers count them) and
their rate over the same peak (`*_mfu`, model FLOP utilisation), and the setting. The two
counts differ only on CPU, where "same" 3x3 convs execute as Winograd F(2x2, 3x3) with 2.25x
fewer FLOPs. Timings are medians over `--steps` after `--warmup` compiled steps, on synthetic
inputs.

`--realtime` times AttaNet's real-time protocol instead (configs/attanet_cityscapes.py:realtime:
batch 1, the --size image (default 1024x2048) resized to the config's eval crop (512x1024)
inside the timed function, the prediction resized back and argmaxed) and reports FPS; with
`--reference=torch`, next to the official PyTorch AttaNet's in the same run:

  python scripts/benchmark.py --config=configs/attanet_cityscapes.py:realtime --realtime \
      --reference=torch --json

`--reference=torch` also runs the same network in PyTorch, in the same process, on inputs of
the same shape (reference/torch/: mmsegmentation's EncoderDecoder for fcn/nl/dnl/danet/ccnet/
emanet/isanet, the official FLANet definition for fla) and adds reference_train_img_per_s and
reference_infer_img_per_s:

  python scripts/benchmark.py --config=configs/danet_cityscapes.py --size=512x512 --batch=2 \
      --reference=torch --json

`--alternate=N` (with `--reference=torch`) then runs N more rounds in which the two take turns
(a flaseg train step, PyTorch's, a flaseg inference, PyTorch's) and adds their medians and
ratios (alternated_*): both frameworks see the same machine state, so on a shared VM, where
separate timings of one network drift by about 5% between runs, their ratio varies less.
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flaseg import config_lib, evaluate, optim, parallel, timing, train  # noqa: E402
from flaseg.errors import UserError  # noqa: E402
from flaseg.models import build_model, init_variables  # noqa: E402


def _peak_mb(compiled):
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20


def matmul_peak_gflops(n=4096, dtype=jnp.float32):
  """GFLOP/s of an n x n x n matmul on the default device: the measured peak that the
  `*_fraction_of_matmul_peak` and `*_mfu` figures divide by (utilisation against what this
  machine's matmul actually reaches, not a datasheet number)."""
  a = jnp.ones((n, n), dtype)
  mm = jax.jit(lambda x: x @ x)
  return 2 * n ** 3 / 1e9 / timing.median_seconds(lambda: mm(a), 3, 1)


def _model_gflop(fn, *args):
  """GFLOP of fn's lowering (fn built from a model with `lowering.conv='direct'`)."""
  return jax.jit(fn).lower(*args).cost_analysis()["flops"] / 1e9


def direct_model(config):
  """The model of `config` with direct convolutions, as GPU/TPU run them and papers count
  them (the model FLOPs of `*_mfu`)."""
  config = config.copy_and_resolve_references()
  config.model.lowering.conv = "direct"
  return build_model(config.model)


def _gflop(compiled):
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan"))) / 1e9 if cost else float("nan")


def backbone_label(bb) -> str:
  """'resnet101', or the backbone's name and fields ('hrnet width=48')."""
  if bb.get("name", "resnet") == "resnet":
    return f"resnet{bb.depth}"
  return " ".join([bb.name] + [f"{k}={v}" for k, v in sorted(bb.items()) if k != "name"])


def time_steps(config, size, batch, steps=5, warmup=1) -> dict:
  """Median seconds of the jitted train step and of the inference (argmax of 'out') of
  `config` on images (batch, *size, 3) over the mesh of every device, with the compiled
  programs, their peak memory and what `benchmark` needs to count their FLOPs."""
  mesh = parallel.make_mesh()
  parallel.check_batch_size(batch, mesh, "--batch")
  model = build_model(config.model)
  shape = (batch, *size, 3)
  with config.unlocked():
    config.train.batch_size = batch
    config.data.crop_size = tuple(size)
  params, _ = init_variables(model, jax.random.key(0), shape)
  tx, schedule = optim.make_optimizer(config.optim, params, 1000)
  state = train.create_state(config, model, tx, mesh, shape)
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)
  rng = np.random.default_rng(0)
  batch_np = {"image": rng.integers(0, 256, shape).astype(np.uint8),
              "label": rng.integers(0, config.model.num_classes, shape[:3]).astype(np.int32)}
  gb = parallel.global_batch(batch_np, mesh)
  train_fn = train.make_train_step(model, tx, schedule, config.loss, config.data.ignore_label,
                                   mesh, config.train.per_device_batch_norm)
  step = jax.jit(train_fn, in_shardings=(repl, data, repl), out_shardings=(repl, repl))
  key = jax.random.key(0)
  compiled_train = step.lower(state, gb, key).compile()
  holder = {"state": state}

  def train_once():
    holder["state"], m = compiled_train(holder["state"], gb, key)
    return m["loss"]

  train_s = timing.median_seconds(train_once, steps, warmup)
  train_peak = _peak_mb(compiled_train)
  variables = {"params": holder["state"].params, **holder["state"].model_state}
  compiled_infer = jax.jit(_infer_fn(model)).lower(variables, gb["image"]).compile()
  infer_once = lambda: compiled_infer(variables, gb["image"])  # noqa: E731
  infer_s = timing.median_seconds(infer_once, steps, warmup)
  return dict(train_s=train_s, infer_s=infer_s, train_once=train_once, infer_once=infer_once,
              compiled_train=compiled_train,
              compiled_infer=compiled_infer,
              peak_memory_mb=max(train_peak, _peak_mb(compiled_infer)),
              params=sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params)),
              state=holder["state"], variables=variables, batch=gb, key=key, tx=tx,
              schedule=schedule, mesh=mesh)


def _infer_fn(model):
  return lambda v, x: jnp.argmax(model.apply(v, x)["out"], -1)


def benchmark(config, size, batch, t, matmul=4096):
  """Returns the benchmark record for `config` at images (batch, *size, 3) from `t`, its
  `time_steps`."""
  train_s, infer_s, gb = t["train_s"], t["infer_s"], t["batch"]
  peak = matmul_peak_gflops(matmul)
  train_gflop, infer_gflop = _gflop(t["compiled_train"]), _gflop(t["compiled_infer"])
  direct = direct_model(config)
  train_model = _model_gflop(
      train.make_train_step(direct, t["tx"], t["schedule"], config.loss, mesh=t["mesh"],
                            per_device_batch_norm=config.train.per_device_batch_norm),
      t["state"], gb, t["key"])
  infer_model = _model_gflop(_infer_fn(direct), t["variables"], gb["image"])
  return {"config": config.model.head, "size": list(size), "batch": batch,
          "backbone": backbone_label(config.model.backbone), "dtype": config.model.dtype,
          "devices": f"{jax.device_count()}x{jax.devices()[0].device_kind}",
          "params": t["params"],
          "train_img_per_s": batch / train_s, "infer_img_per_s": batch / infer_s,
          "peak_memory_mb": t["peak_memory_mb"],
          "train_step_s": train_s, "infer_step_s": infer_s,
          "train_gflop_per_step": train_gflop, "infer_gflop_per_step": infer_gflop,
          "train_gflop_per_s": train_gflop / train_s, "infer_gflop_per_s": infer_gflop / infer_s,
          "matmul_peak_gflop_per_s": peak,
          "train_fraction_of_matmul_peak": train_gflop / train_s / peak,
          "infer_fraction_of_matmul_peak": infer_gflop / infer_s / peak,
          "train_model_gflop_per_step": train_model, "infer_model_gflop_per_step": infer_model,
          "train_mfu": train_model / train_s / peak, "infer_mfu": infer_model / infer_s / peak}


def alternate(t, peer_train, peer_infer, rounds):
  """Medians of `rounds` rounds of a flaseg train step (`time_steps`' `t`), the peer's
  (`peer_train()`), a flaseg inference and the peer's (`peer_infer()`), after one untimed
  round, and the peer's time over flaseg's (above 1: flaseg is faster)."""
  ways = {"train": (t["train_once"], peer_train), "infer": (t["infer_once"], peer_infer)}
  times = {(kind, who): [] for kind in ways for who in (0, 1)}
  for r in range(rounds + 1):
    for kind, fns in ways.items():
      for who, fn in enumerate(fns):
        start = time.perf_counter()
        result = fn()
        if who == 0:  # PyTorch's CPU ops return when done; JAX dispatches asynchronously
          jax.block_until_ready(result)
        if r:
          times[(kind, who)].append(time.perf_counter() - start)
  med = {k: float(np.median(v)) for k, v in times.items()}
  out = {"alternated_rounds": rounds}
  for kind in ways:
    out[f"alternated_{kind}_step_s"] = med[(kind, 0)]
    out[f"alternated_reference_{kind}_step_s"] = med[(kind, 1)]
    out[f"alternated_{kind}_ratio"] = med[(kind, 1)] / med[(kind, 0)]
  return out


def realtime(config, size, steps=10, warmup=2):
  """FPS of `make_predict_fn` (the config's eval mode, 'resize' for AttaNet's real-time
  protocol) on one device-resident uint8 image of `size`, batch 1, to the argmax label map."""
  model = build_model(config.model)
  shape = (1, *size, 3)
  params, state = init_variables(model, jax.random.key(0), shape)
  variables = {"params": params, **state}
  predict = evaluate.make_predict_fn(model, config.eval, config.model.align_corners)
  image = jnp.asarray(np.random.default_rng(0).integers(0, 256, shape), jnp.uint8)
  compiled = jax.jit(lambda v, x: predict(v, x, x.shape[1:3])).lower(variables, image).compile()
  seconds = timing.median_seconds(lambda: compiled(variables, image), steps, warmup)
  return {"config": config.model.head, "size": list(size), "batch": 1,
          "eval_mode": config.eval.mode, "inner_size": list(config.eval.crop_size),
          "devices": f"{jax.device_count()}x{jax.devices()[0].device_kind}",
          "realtime_fps": 1.0 / seconds, "realtime_s": seconds}


def main():
  try:
    run()
  except (UserError, ValueError) as e:  # bad config, head or size: one line, no traceback
    sys.exit(f"benchmark.py: {e}")


def run():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="configs/X.py[:arg]")
  p.add_argument("--size", default="", help="HxW (default: the config's crop)")
  p.add_argument("--batch", type=int, default=0, help="global batch (default: the config's)")
  p.add_argument("--backbone", default="", help="resnet18|resnet34|resnet50|resnet101")
  p.add_argument("--dtype", default="", help="float32|bfloat16 compute")
  p.add_argument("--attention", default="", help="auto|xla|cudnn|chunked "
                 "(config.model.lowering.attention)")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--matmul", type=int, default=4096, help="n of the n^3 matmul peak")
  p.add_argument("--reference", default="", choices=("", "torch"),
                 help="also time the PyTorch peer of the network (see the docstring)")
  p.add_argument("--alternate", type=int, default=0,
                 help="with --reference=torch: this many more rounds of the two taking turns")
  p.add_argument("--realtime", action="store_true",
                 help="AttaNet's real-time protocol: batch 1, resize inside, FPS")
  p.add_argument("--json", action="store_true", help="print only the JSON object")
  a = p.parse_args()
  if a.alternate and (not a.reference or a.realtime):
    raise UserError(f"--alternate={a.alternate} needs --reference=torch and no --realtime")
  config = config_lib.load(a.config)
  if a.backbone:
    config.model.backbone.depth = int(a.backbone.replace("resnet", ""))
  if a.dtype:
    config.model.dtype = a.dtype
  if a.attention:
    config.model.lowering.attention = a.attention
  size = tuple(int(v) for v in a.size.lower().split("x")) if a.size else tuple(
      config.data.crop_size)
  batch = a.batch or config.train.batch_size
  if config.model.num_classes == 0:  # 'the dataset's' (:smoke): Cityscapes' 19
    config.model.num_classes = 19
  if a.realtime:
    size = tuple(int(v) for v in a.size.lower().split("x")) if a.size else (1024, 2048)
    record = realtime(config, size, a.steps, a.warmup)
    if a.reference:
      from reference.torch import benchmark as torch_peer
      record.update(torch_peer.realtime(config, size, tuple(config.eval.crop_size), a.steps,
                                        a.warmup))
  else:
    if a.reference:
      from reference.torch import benchmark as torch_peer
      torch_peer.check(config)  # an unsupported head fails before the long flaseg run
    t = time_steps(config, size, batch, a.steps, a.warmup)
    record = benchmark(config, size, batch, t, a.matmul)
    if a.reference:
      print(json.dumps(record), file=sys.stderr, flush=True)  # kept if the peer fails
      record.update(torch_peer.benchmark(config, size, batch, a.steps, a.warmup))
    if a.alternate:
      peer_train, peer_infer, _ = torch_peer.make_steps(config, size, batch)
      record.update(alternate(t, peer_train, peer_infer, a.alternate))
  if a.json:
    print(json.dumps(record))
  else:
    for k, v in record.items():
      print(f"{k:>16}: {v}")


if __name__ == "__main__":
  main()
