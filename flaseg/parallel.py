"""Device mesh and shardings for data parallelism (batch on the 'data' axis).

With `AxisType.Auto` the compiler propagates shardings, so under `jax.jit` BatchNorm statistics
and loss means are computed over the global batch (SyncBN) with no explicit collectives.
"""
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from flaseg.errors import ConfigError


def make_mesh(devices=None):
  devices = jax.devices() if devices is None else devices
  return jax.sharding.Mesh(np.asarray(devices), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh):
  return NamedSharding(mesh, P())


def data_sharded(mesh):
  return NamedSharding(mesh, P("data"))


def check_batch_size(global_batch: int, mesh, key="config.train.batch_size"):
  n = mesh.devices.size
  if global_batch % n or global_batch % jax.process_count():
    raise ConfigError(f"{key}={global_batch} is not divisible by the {n} devices "
                     f"({jax.process_count()} processes) of the mesh")
  return global_batch // jax.process_count()


def global_batch(local_batch: dict, mesh):
  """Process-local numpy batch -> global jax.Arrays sharded on 'data' (multi-host safe)."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def local_array(x: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in order (all rows on one host)."""
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for s in shards:
    start = s.index[0].start or 0
    if start not in seen:
      seen.add(start)
      rows.append(np.asarray(s.data))
  return np.concatenate(rows)
