"""The run's folder: its absolute path, created if its parent exists and checked writable, the
lock that keeps a second run out, metrics.jsonl cut back to a resumed checkpoint, and the
multi-host check that every process sees it."""
import datetime
import json
import os
import socket

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from flaseg.errors import ConfigError, NotFoundError, UserError
from flaseg.reporting import is_main

LOCK = "flaseg.lock"
METRICS_SET_ASIDE = "metrics_set_aside.jsonl"


def abs_workdir(workdir: str) -> str:
  """The absolute path of `workdir`. Multi-host runs need a folder every host sees (NFS,
  Filestore, a bucket mounted with gcsfuse); URLs such as gs://... are refused."""
  if "://" in workdir:
    raise ConfigError(f"--workdir={workdir}: give a folder path, not a URL; for a bucket, mount "
                     "it on every host (gcsfuse, see README 'Multi-host') and pass the mount path")
  return os.path.abspath(os.path.expanduser(workdir))


def prepare_workdir(workdir: str) -> str:
  """Absolute workdir, created if its parent exists (a typo in the parent is an error)."""
  workdir = abs_workdir(workdir)
  parent = os.path.dirname(workdir)
  if not os.path.isdir(parent):
    raise NotFoundError(f"--workdir={workdir}: parent folder {parent} does not exist")
  check_writable(workdir, "--workdir")
  return workdir


def check_writable(folder: str, what: str) -> None:
  """Creates `folder` if needed and writes and removes a test file in it, so that a folder
  that cannot be written is one line at the start, not a failure (or a hang) at the first
  save. `what` names the flag or config key in the message."""
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise ConfigError(f"{what}={folder} is a file, not a folder")
  test = os.path.join(folder, f".flaseg_write_test_{os.getpid()}")
  try:
    os.makedirs(folder, exist_ok=True)
    with open(test, "w") as f:
      f.write("flaseg")
    os.remove(test)
  except OSError as e:
    raise ConfigError(f"{what}={folder} is not writable: {e.strerror or e}") from None


class Lock:
  """workdir/flaseg.lock (host, pid, start time) while a training run uses the workdir:
  a second run is refused; the lock of a process that is gone (same host) is taken over with a
  warning. Process 0 holds it; a lock on another host is only removed by hand."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK)
    self.held = False

  def __enter__(self):
    if not is_main():
      return self
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "start": datetime.datetime.now().isoformat(timespec="seconds")}
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        self._take_over_if_stale(me["host"])
        continue
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      self.held = True
      return self
    raise UserError(f"cannot lock {self.path}")

  def _take_over_if_stale(self, host: str) -> None:
    try:
      with open(self.path) as f:
        owner = json.load(f)
      pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
      owner, pid = {}, None
    if owner and (owner.get("host") != host or _alive(pid)):
      raise UserError(
          f"workdir {os.path.dirname(self.path)} is in use by pid {pid} on "
          f"{owner.get('host')} since {owner.get('start')}; if that run is gone, delete "
          f"{self.path}")
    logging.warning("taking over the stale lock %s (%s: that process is gone)", self.path,
                    owner or "unreadable")
    os.remove(self.path)

  def __exit__(self, *exc):
    if self.held:
      os.remove(self.path)
      self.held = False


def _alive(pid) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def truncate_metrics(workdir: str, step: int) -> int:
  """Moves the records of metrics.jsonl after `step` (the step resumed from: a run killed
  after its last checkpoint logged them, and they are about to be run again) to
  workdir/metrics_set_aside.jsonl, so that no step appears twice. Returns how many moved."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not is_main() or not os.path.isfile(path):
    return 0
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  def later(line):
    try:
      return json.loads(line).get("step", 0) > step
    except ValueError:  # a line cut short by a kill
      return True
  moved = [line for line in lines if later(line)]
  if moved:
    with open(os.path.join(workdir, METRICS_SET_ASIDE), "a") as f:  # first: nothing is lost
      f.writelines(moved)
    with open(path + ".tmp", "w") as f:
      f.writelines(line for line in lines if not later(line))
    os.replace(path + ".tmp", path)
  return len(moved)


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
    raise ConfigError(f"--workdir={workdir} is not shared: process(es) {missing} do not see the "
                     "files process 0 writes there; use a folder every host mounts (NFS, "
                     "Filestore, gcsfuse)")
