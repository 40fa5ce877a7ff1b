"""Every config file loads with its default and `smoke` args, names a known head, dataset and
loss output, and its smoke version builds a model whose outputs match the loss weights."""
import glob
import os

import jax
import jax.numpy as jnp
import pytest

from flaseg import config_lib, data
from flaseg.models import HEADS, build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
STUDY = [f"configs/study.py:head={h}" for h in sorted(HEADS)]


@pytest.mark.parametrize("path", CONFIGS + STUDY)
def test_config_loads_and_smoke_builds(path, monkeypatch):
  monkeypatch.chdir(REPO)
  full = config_lib.load(path)
  assert full.model.head in HEADS and full.data.name in data.DATASETS
  smoke = config_lib.load(f"{path}{',' if ':' in path else ':'}smoke")
  assert smoke.data.name == "synthetic" and smoke.train.steps <= 10
  smoke.model.num_classes = 9
  model = build_model(smoke.model)
  x = jnp.zeros((2, 32, 48, 3), jnp.uint8)
  out = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
  assert set(full.loss.weights) <= set(out), (set(full.loss.weights), set(out))
  assert out["out"].shape == (2, 32, 48, 9)


def test_quickstart_is_the_synthetic_flanet():
  c = config_lib.load(os.path.join(REPO, "configs/quickstart.py"))
  assert c.data.name == "synthetic" and c.model.head == "fla"


def test_unknown_config_arg_is_named():
  with pytest.raises(ValueError, match="'smok'"):
    config_lib.load(os.path.join(REPO, "configs/quickstart.py:smok"))
