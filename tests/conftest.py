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
# One persistent compilation cache for the session, shared by this process, the pytest-xdist
# workers (started after this file ran, they inherit the variable) and every subprocess (CLI
# tests): a program that many tests compile, such as the `quickstart.py:smoke` train step,
# is compiled by XLA once. A fresh folder per session, removed at its end by the process that
# made it, so no test reads a compilation of another checkout.
if "FLASEG_TEST_JAX_CACHE" not in os.environ:
  os.environ["FLASEG_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="flaseg_test_jax_cache_")
  atexit.register(shutil.rmtree, os.environ["FLASEG_TEST_JAX_CACHE"], ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["FLASEG_TEST_JAX_CACHE"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

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


def pytest_collection_modifyitems(config, items):
  """Under pytest-xdist (`-n 2`, `--dist=loadgroup`): each test file runs on one worker, so
  that its module-scoped fixtures (trained models, compiled steps) are built once, and the
  files that share `own_data_run` on the same one, so that it trains once."""
  for item in items:
    group = "own_data" if "own_data_run" in getattr(item, "fixturenames", ()) else \
        item.nodeid.split("::")[0]
    item.add_marker(pytest.mark.xdist_group(group))
