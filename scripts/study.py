"""The empirical study's table (Guo et al., arXiv 2309.10217) for its eight networks, each under
configs/study.py's one protocol (ResNetV1c-101-D8, mmseg's 80k recipe).

  python scripts/study.py                        # every network: counts, timing, smoke runs
  python scripts/study.py --size=512x1024 --batch=2 --networks=fla,nl --smoke=false
  python scripts/study.py --timing=false --json  # counts and smoke runs only, JSON lines
  python scripts/study.py --variant=smoke        # the tiny :smoke networks (a quick check)

Per network (both readings of "DNLNet": dnl, denoised_nl):
  params      parameters (M) of the network with its Cityscapes classifier, aux heads included;
  GFLOPs      at --flops-size (default 769x769, the study's crop), batch 1, inference, every
              output, counted as the study counts: per convolution 2 H W (Cin K^2 + 1) Cout
              (Cin per group; the +1 the bias, for every conv); the attention's matmuls,
              resizes and element-wise work are not convolutions and are not counted;
  memory      peak memory (MiB) of the train step at --size / --batch (scripts/benchmark.py's
              figure: on CPU XLA's compiled buffers, a lower bound);
  train/infer img/s of the jitted train step and inference at --size / --batch, on whatever
              devices JAX sees (medians over --steps after one warm-up step);
  smoke mIoU  `configs/study.py:head=<net>,smoke` trained and evaluated (a few steps on the
              synthetic set, in a temporary workdir): the protocol runs end to end.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import benchmark  # noqa: E402  (scripts/benchmark.py)
import param_counts  # noqa: E402  (scripts/param_counts.py)
from flaseg import config_lib, train  # noqa: E402

STUDY = os.path.join(REPO, "configs", "study.py")


def study_gflops(config, size) -> float:
  """GFLOPs of one eval-mode forward at `size`: sum over convolutions of
  2 x positions x Cout x (Cin/groups x Kh x Kw + 1)."""
  return sum(2 * n * k[-1] * (int(np.prod(k[:-1])) + 1)
             for k, n in param_counts.model_conv_layers(config, size)) / 1e9


def smoke_miou(head: str) -> float:
  """Final mIoU of `configs/study.py:head=<head>,smoke`, trained in a temporary workdir."""
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(sys.stderr):
    config = config_lib.load(f"{STUDY}:head={head},smoke")  # its progress lines: stderr
    config.train.tensorboard = False
    return float(train.train_and_evaluate(config, workdir)["miou"])


def row(head, a) -> dict:
  config = config_lib.load(f"{STUDY}:head={head}" + (",smoke" if a.variant == "smoke" else ""))
  config.model.num_classes = 19
  r = {"network": head,
       "params_m": param_counts.count(param_counts.model_params(config)) / 1e6,
       "gflops": study_gflops(config, a.flops_size)}
  if a.timing:
    t = benchmark.time_steps(config, a.size, a.batch, a.steps, warmup=1)
    r.update(memory_mb=t["peak_memory_mb"], train_img_per_s=a.batch / t["train_s"],
             infer_img_per_s=a.batch / t["infer_s"])
  if a.smoke:
    r["smoke_miou"] = smoke_miou(head)
  return r


def _size(text: str) -> tuple:
  return tuple(int(v) for v in text.lower().split("x"))


def _bool(text: str) -> bool:
  return text.lower() in ("1", "true", "yes")


def main():
  study = config_lib.load_module(STUDY)
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--networks", default=",".join(study.NETWORKS),
                 help=f"comma-separated, of {study.HEADS}")
  p.add_argument("--flops-size", type=_size, default=(769, 769), help="HxW of the GFLOPs")
  p.add_argument("--size", type=_size, default=(512, 512), help="HxW of the timing")
  p.add_argument("--batch", type=int, default=1, help="global batch of the timing")
  p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
  p.add_argument("--timing", type=_bool, default=True)
  p.add_argument("--smoke", type=_bool, default=True, help="train + evaluate each at :smoke")
  p.add_argument("--variant", default="full", choices=("full", "smoke"),
                 help="count and time the full networks or their tiny :smoke versions")
  p.add_argument("--json", action="store_true", help="one JSON object per network")
  a = p.parse_args()
  heads = [h for h in a.networks.split(",") if h]
  unknown = [h for h in heads if h not in study.HEADS]
  if unknown:
    sys.exit(f"study.py: --networks: unknown {unknown}; choose from {study.HEADS}")
  cols = ["network", "params_m", "gflops"] + (
      ["memory_mb", "train_img_per_s", "infer_img_per_s"] if a.timing else []) + (
      ["smoke_miou"] if a.smoke else [])
  if not a.json:
    print(f"ResNetV1c-101-D8, GFLOPs at {a.flops_size[0]}x{a.flops_size[1]} (batch 1), "
          f"timing at {a.size[0]}x{a.size[1]} batch {a.batch}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
  for head in heads:
    r = row(head, a)
    if a.json:
      print(json.dumps(r), flush=True)
    else:
      print("| " + " | ".join(r[c] if isinstance(r[c], str) else f"{r[c]:.2f}" for c in cols)
            + " |", flush=True)


if __name__ == "__main__":
  main()
