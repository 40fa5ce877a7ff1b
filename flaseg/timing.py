"""Wall-clock timing for the benchmarks: one median timer for JAX and PyTorch alike."""
import time

import jax
import numpy as np


def median_seconds(fn, steps: int = 5, warmup: int = 1, block: bool = True) -> float:
  """Median wall time of `fn()` over `steps` calls after `warmup` untimed ones. With `block`,
  JAX's asynchronous dispatch is waited for (`jax.block_until_ready` on the result), so a
  call is timed to its end; PyTorch's CPU ops return when done and need no blocking."""
  call = (lambda: jax.block_until_ready(fn())) if block else fn
  for _ in range(warmup):
    call()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return float(np.median(times))
