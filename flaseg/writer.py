"""What a run writes: metrics.jsonl, progress lines and prediction PNGs (process 0 only)."""
import json
import math
import os
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from PIL import Image


def is_main() -> bool:
  return jax.process_index() == 0


def info(msg: str) -> None:
  if is_main():
    print(msg, flush=True)


def abs_workdir(workdir: str) -> str:
  """The absolute path of `workdir`. Multi-host runs need a folder every host sees (NFS,
  Filestore, a bucket mounted with gcsfuse); URLs such as gs://... are refused."""
  if "://" in workdir:
    raise ValueError(f"--workdir={workdir}: give a folder path, not a URL; for a bucket, mount "
                     "it on every host (gcsfuse, see README 'Multi-host') and pass the mount path")
  return os.path.abspath(os.path.expanduser(workdir))


def prepare_workdir(workdir: str) -> str:
  """Absolute workdir, created if its parent exists (a typo in the parent is an error)."""
  workdir = abs_workdir(workdir)
  parent = os.path.dirname(workdir)
  if not os.path.isdir(parent):
    raise FileNotFoundError(f"--workdir={workdir}: parent folder {parent} does not exist")
  os.makedirs(workdir, exist_ok=True)
  return workdir


def check_shared_workdir(workdir: str) -> None:
  """Multi-host: stops unless every process sees the files process 0 writes in `workdir`
  (orbax writes checkpoint shards from every process into one folder). All processes call it."""
  if jax.process_count() == 1:
    return
  path = os.path.join(workdir, ".flaseg_shared_check")
  token = str(int(multihost_utils.broadcast_one_to_all(
      np.int32(int.from_bytes(os.urandom(3), "little")))))
  if is_main():
    with open(path, "w") as f:
      f.write(token)
  multihost_utils.sync_global_devices("flaseg: shared workdir token written")
  try:
    with open(path) as f:
      seen = f.read() == token
  except OSError:
    seen = False
  seen_by = np.asarray(multihost_utils.process_allgather(np.int32(seen)))
  if is_main():
    os.remove(path)
  if not seen_by.all():
    missing = [int(p) for p in np.flatnonzero(seen_by == 0)]
    raise ValueError(f"--workdir={workdir} is not shared: process(es) {missing} do not see the "
                     "files process 0 writes there; use a folder every host mounts (NFS, "
                     "Filestore, gcsfuse)")


class MetricWriter:
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


def colorize(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
  """(H, W) class ids -> (H, W, 3) uint8 colours; ignored pixels (>= K) are black."""
  pal = np.concatenate([np.asarray(palette, np.uint8), np.zeros((256 - len(palette), 3), np.uint8)])
  return pal[np.asarray(label).astype(np.uint8)]


def save_prediction_png(path: str, image, label, pred, palette) -> None:
  """image | ground truth | prediction side by side."""
  panel = np.concatenate([np.asarray(image, np.uint8), colorize(label, palette),
                          colorize(pred, palette)], axis=1)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(panel).save(path)
