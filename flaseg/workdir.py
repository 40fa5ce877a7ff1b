"""The run's folder: its absolute path, created if its parent exists, and the multi-host check
that every process sees it."""
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from flaseg.errors import ConfigError, NotFoundError
from flaseg.reporting import is_main


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
    raise ConfigError(f"--workdir={workdir} is not shared: process(es) {missing} do not see the "
                     "files process 0 writes there; use a folder every host mounts (NFS, "
                     "Filestore, gcsfuse)")
