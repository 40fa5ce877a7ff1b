"""What a run reports: progress lines and workdir/metrics.jsonl (process 0 only)."""
import json
import math
import os
import time

import jax


def is_main() -> bool:
  return jax.process_index() == 0


def info(msg: str) -> None:
  if is_main():
    print(msg, flush=True)


class MetricsLog:
  """Appends one JSON object per line to workdir/metrics.jsonl (kept across resumes)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")

  def write(self, record: dict) -> None:
    if is_main():
      with open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _fmt_time(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
  """Throughput and ETA between calls of `update` (the first interval includes compilation,
  so the ETA uses the latest interval's speed)."""

  def __init__(self, total: int, start: int, name: str):
    self.total, self.name = total, name
    self.last_step, self.last_time = start, time.perf_counter()

  def update(self, step: int, items_per_step: int, extra: str = "") -> float:
    now = time.perf_counter()
    dt = max(now - self.last_time, 1e-9)
    steps = step - self.last_step
    rate = steps * items_per_step / dt
    eta = (self.total - step) * dt / max(steps, 1)
    self.last_step, self.last_time = step, now
    info(f"[{self.name}] {step}/{self.total} {extra}{rate:.2f} img/s ETA {_fmt_time(eta)}")
    return rate
