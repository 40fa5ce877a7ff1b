"""README "Adding a head": its three code blocks, run as written. The head module is executed,
registered in the public `models.HEADS` dict (as its registry line does) and trained and
evaluated at `:smoke` from the config file the README shows."""
import json
import os
import re

import jax
import numpy as np
import pytest

from flaseg import config_lib, models, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_block(first_line: str) -> str:
  """The ```python block of README.md whose first line is `first_line`."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  found = [b for b in blocks if b.startswith(first_line + "\n")]
  assert len(found) == 1, f"README.md has {len(found)} python blocks starting {first_line!r}"
  return found[0]


def test_readme_head_trains_through_the_registry(tmp_path, monkeypatch):
  namespace = {}
  exec(compile(readme_block("# flaseg/models/heads/my_head.py"), "my_head.py", "exec"),
       namespace)
  registry_line = readme_block('    "my_head": MyHead,').strip()
  key, value = (part.strip(' ",') for part in registry_line.split(":"))
  monkeypatch.setitem(models.HEADS, key, namespace[value])
  config_file = tmp_path / "my_head_cityscapes.py"
  config_file.write_text(readme_block("# configs/my_head_cityscapes.py"))

  config = config_lib.load(f"{config_file}:smoke")
  assert config.model.head_kwargs.channels == 16  # the smoke widths reach a new head
  result = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert 0.0 <= result["miou"] <= 1.0
  model = models.build_model(config.model)
  params, _ = models.init_variables(model, jax.random.key(0), (1, 32, 48, 3))
  assert {"conv_in", "query", "key", "cls", "aux_head"} <= set(params["head"])
  with open(tmp_path / "run" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  losses = [r["loss"] for r in records if "loss" in r]
  assert len(losses) == 3 and np.all(np.isfinite(losses))
  assert all("loss_aux" in r for r in records if "loss" in r)


def test_unknown_head_names_the_choices():
  config = config_lib.load(os.path.join(REPO, "configs/quickstart.py:smoke"))
  config.model.head = "my_typo"
  with pytest.raises(ValueError, match="config.model.head='my_typo': choose one of"):
    models.build_model(config.model)
