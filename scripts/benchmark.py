"""Train-step and inference throughput of any config, on whatever devices JAX sees.

  python scripts/benchmark.py --config=configs/fla_cityscapes.py --size=512x512 --batch=2 \
      --backbone=resnet50 --json
  python scripts/benchmark.py --config=configs/quickstart.py --json   # the config's crop/batch

Reports one JSON object: train_img_per_s, infer_img_per_s, peak_memory_mb (device peak where
the backend reports it, else XLA's compiled temp + argument + output sizes — on CPU a lower
bound, since library fusions hide their buffers; scripts/cost.py compiles without them),
params, and the setting. Timings are medians over `--steps` after `--warmup` compiled steps; synthetic inputs.
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
from flaseg import config_lib, optim, parallel, train  # noqa: E402
from flaseg.models import build_model  # noqa: E402


def _peak_mb(compiled):
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes) / 2**20


def _time(fn, steps, warmup):
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def benchmark(config, size, batch, steps=5, warmup=1):
  """Returns the benchmark record for `config` at images (batch, *size, 3)."""
  if config.model.num_classes == 0:
    config.model.num_classes = 19
  mesh = parallel.make_mesh()
  parallel.check_batch_size(batch, mesh, "--batch")
  model = build_model(config.model)
  shape = (batch, *size, 3)
  with config.unlocked():
    config.train.batch_size = batch
    config.data.crop_size = tuple(size)
  params, _ = train.init_variables(model, jax.random.key(0), shape)
  tx, schedule = optim.make_optimizer(config.optim, params, 1000)
  state = train.create_state(config, model, tx, mesh, shape)
  repl, data = parallel.replicated(mesh), parallel.data_sharded(mesh)
  rng = np.random.default_rng(0)
  batch_np = {"image": rng.integers(0, 256, shape).astype(np.uint8),
              "label": rng.integers(0, config.model.num_classes, shape[:3]).astype(np.int32)}
  gb = parallel.global_batch(batch_np, mesh)
  step = jax.jit(train.make_train_step(model, tx, schedule, config.loss),
                 in_shardings=(repl, data, repl), out_shardings=(repl, repl))
  key = jax.random.key(0)
  compiled_train = step.lower(state, gb, key).compile()
  holder = {"state": state}

  def train_once():
    holder["state"], m = compiled_train(holder["state"], gb, key)
    return m["loss"]

  train_s = _time(train_once, steps, warmup)
  train_peak = _peak_mb(compiled_train)
  variables = {"params": holder["state"].params, **holder["state"].model_state}
  infer = jax.jit(lambda v, x: jnp.argmax(model.apply(v, x)["out"], -1))
  compiled_infer = infer.lower(variables, gb["image"]).compile()
  infer_s = _time(lambda: compiled_infer(variables, gb["image"]), steps, warmup)
  n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
  return {"config": config.model.head, "size": list(size), "batch": batch,
          "backbone": f"resnet{config.model.backbone.depth}", "dtype": config.model.dtype,
          "devices": f"{jax.device_count()}x{jax.devices()[0].device_kind}",
          "params": n_params,
          "train_img_per_s": batch / train_s, "infer_img_per_s": batch / infer_s,
          "peak_memory_mb": max(train_peak, _peak_mb(compiled_infer)),
          "train_step_s": train_s, "infer_step_s": infer_s}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True, help="configs/X.py[:arg]")
  p.add_argument("--size", default="", help="HxW (default: the config's crop)")
  p.add_argument("--batch", type=int, default=0, help="global batch (default: the config's)")
  p.add_argument("--backbone", default="", help="resnet18|resnet34|resnet50|resnet101")
  p.add_argument("--dtype", default="", help="float32|bfloat16 compute")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--json", action="store_true", help="print only the JSON object")
  a = p.parse_args()
  config = config_lib.load(a.config)
  if a.backbone:
    config.model.backbone.depth = int(a.backbone.replace("resnet", ""))
  if a.dtype:
    config.model.dtype = a.dtype
  size = tuple(int(v) for v in a.size.lower().split("x")) if a.size else tuple(
      config.data.crop_size)
  record = benchmark(config, size, a.batch or config.train.batch_size, a.steps, a.warmup)
  if a.json:
    print(json.dumps(record))
  else:
    for k, v in record.items():
      print(f"{k:>16}: {v}")


if __name__ == "__main__":
  main()
