"""scripts/visualize.py: attention maps sown by the FLA block and AttaNet's SAM (without
changing the outputs), and the PNGs the script writes for a smoke checkpoint."""
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flaseg import config_lib
from flaseg.models import build_model
from flaseg.models.heads import attanet, fla

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def viz():
  """scripts/visualize.py as a module (its absl flags are defined once per process)."""
  spec = importlib.util.spec_from_file_location(
      "flaseg_visualize", os.path.join(REPO, "scripts", "visualize.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("config,keys", [
    ("configs/quickstart.py:smoke", {"attention_h", "attention_w", "response"}),
    ("configs/attanet_cityscapes.py:smoke", {"attention"}),
])
def test_sown_attention_leaves_the_outputs_unchanged(config, keys):
  cfg = config_lib.load(os.path.join(REPO, config))
  cfg.model.num_classes = 5
  model = build_model(cfg.model)
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3)), jnp.uint8)
  variables = model.init(jax.random.key(0), images)
  assert "intermediates" not in variables           # init and training never collect them
  plain = model.apply(variables, images)
  out, inter = model.apply(variables, images, mutable=["intermediates"])
  np.testing.assert_array_equal(out["out"], plain["out"])
  sown = {path[-1].key: v[0] for path, v in
          jax.tree_util.tree_flatten_with_path(inter["intermediates"],
                                               is_leaf=lambda x: isinstance(x, tuple))[0]}
  assert set(sown) == keys
  if "attention" in sown:                            # SAM: (B, W, H, W), softmax over strips
    a = sown["attention"]
    assert a.shape[0] == 2 and a.shape[1] == a.shape[3]
    np.testing.assert_allclose(a.sum(1), 1.0, rtol=1e-5)
  else:                                              # FLA: C x C maps per column and row
    a_h, a_w, r = sown["attention_h"], sown["attention_w"], sown["response"]
    b, h, w, c = r.shape
    assert a_h.shape == (b, w, c, c) and a_w.shape == (b, h, c, c)
    np.testing.assert_allclose(a_h.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a_w.sum(-1), 1.0, rtol=1e-5)


def test_the_sown_maps_are_those_of_the_attention_functions():
  rng = np.random.default_rng(1)
  x, enc_h, enc_w = (jnp.asarray(rng.normal(size=s), jnp.float32)
                     for s in ((2, 5, 6, 4), (2, 5, 4), (2, 6, 4)))
  a_h, a_w = fla.fla_attention_maps(x, enc_h, enc_w)
  want = jnp.einsum("bwcd,bhwd->bhwc", a_h, x) + jnp.einsum("bhcd,bhwd->bhwc", a_w, x)
  np.testing.assert_allclose(fla.fla_attention(x, enc_h, enc_w), want, rtol=1e-5, atol=1e-6)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32) for _ in range(3))
  attn = attanet.strip_attention_weights(q, k)
  want = jnp.einsum("bsc,bshw->bhwc", v.mean(1), attn)
  np.testing.assert_allclose(attanet.strip_attention(q, k, v), want, rtol=1e-5, atol=1e-6)


def test_plots_from_arrays(viz, tmp_path):
  import matplotlib
  matplotlib.use("Agg")
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)
  soft = lambda z, axis: np.exp(z) / np.exp(z).sum(axis, keepdims=True)
  sown = {"attention_h": soft(rng.normal(size=(8, 4, 4)), -1),
          "attention_w": soft(rng.normal(size=(6, 4, 4)), -1),
          "response": rng.normal(size=(6, 8, 4))}
  viz.plot_fla(str(tmp_path / "fla.png"), image, sown, channel=2)
  pixels = viz.parse_pixels("", 48, 64)
  viz.plot_sam(str(tmp_path / "sam.png"), image, soft(rng.normal(size=(8, 6, 8)), 0), pixels,
               horizontal=False)
  for name in ("fla.png", "sam.png"):
    assert Image.open(tmp_path / name).size[0] > 600
  assert viz.parse_pixels("1,2;40,63", 48, 64) == [(1, 2), (40, 63)]
  with pytest.raises(ValueError, match="outside"):
    viz.parse_pixels("48,0", 48, 64)
  with pytest.raises(ValueError, match="channels"):
    viz.plot_fla(str(tmp_path / "x.png"), image, sown, channel=4)


def _script(*args):
  return subprocess.run([sys.executable, "scripts/visualize.py", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_script_on_a_smoke_checkpoint(tmp_path):
  workdir, out = str(tmp_path / "run"), str(tmp_path / "pictures")
  smoke = "--config=configs/quickstart.py:smoke"
  res = subprocess.run([sys.executable, "-m", "flaseg.main", smoke, f"--workdir={workdir}",
                        "--config.train.steps=2"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert res.returncode == 0, res.stderr[-3000:]
  res = _script(smoke, f"--workdir={workdir}", "--images=0,3", f"--out={out}")
  assert res.returncode == 0, res.stderr[-3000:]
  assert sorted(os.listdir(out)) == ["curves.png", "fla_000000.png", "fla_000003.png",
                                     "pred_000000.png", "pred_000003.png"]
  for name in os.listdir(out):
    with Image.open(os.path.join(out, name)) as im:
      assert im.size[0] >= 600 and im.size[1] >= 300, name
  res = _script(smoke, f"--workdir={workdir}", "--images=0,99", f"--out={tmp_path / 'x'}")
  assert res.returncode == 2 and "index 99 is out of range" in res.stderr
  assert "Traceback" not in res.stderr and not os.path.exists(tmp_path / "x")
