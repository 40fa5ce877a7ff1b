"""Tests run on 8 simulated CPU devices so that sharding and cross-replica BN are exercised."""
import atexit
import os
import shutil
import sys
import tempfile

# Backend optimisation level 0 compiles tiny test models 3-4x faster (they run slower, which
# does not matter at test sizes). Subprocesses started by tests inherit both flags.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8"
                           + " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session, this process and every subprocess (CLI
# tests): a program that many tests compile, such as the `quickstart.py:smoke` train step,
# is compiled by XLA once. A fresh folder per session, removed at its end, so no test reads a
# compilation of another checkout.
_CACHE = tempfile.mkdtemp(prefix="flaseg_test_jax_cache_")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

# The repository root, so that tests import the PyTorch peers as `from reference.torch import
# ...` (reference/ lives beside flaseg/ and is not installed with it).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def own_data_run(tmp_path_factory):
  """README "Your own images and data": a folder dataset, photos, and a `:smoke` run trained
  on the folder by the README's command (tests/own_data.py), once per session."""
  import own_data
  return own_data.make_run(tmp_path_factory.mktemp("own_data"))
