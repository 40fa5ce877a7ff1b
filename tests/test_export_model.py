"""python -m flaseg.export_model: the jax.export artefact, reloaded in a fresh process that
imports jax and numpy only, gives the trained model's logits (up to softmax's
normalisation) for any batch size; so does the ONNX model, run by onnxruntime."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import own_data
from flaseg import config_lib, export_model, parallel, predict, train
from flaseg.errors import ConfigError

RELOAD = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
    images = np.load(sys.argv[2])
    out = {}
    for b in (1, 3):  # the batch is symbolic
      labels, probs = exported.call(images[:b])
      out[f"labels_{b}"], out[f"probs_{b}"] = np.asarray(labels), np.asarray(probs)
    np.savez(sys.argv[3], **out)
    print(json.dumps(sorted(m for m in sys.modules if m == "flaseg" or m.startswith("flaseg."))))
""")


ONNX_RUN = textwrap.dedent("""
    import json, sys
    import numpy as np, onnxruntime
    session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    images = np.load(sys.argv[2])
    out = {}
    for b in (1, 3):  # the batch is symbolic
      out[f"labels_{b}"], out[f"probs_{b}"] = session.run(None, {"images": images[:b]})
    np.savez(sys.argv[3], **out)
    names = [i.name for i in session.get_inputs()] + [o.name for o in session.get_outputs()]
    print(json.dumps(names))
""")


def _config(own_data_run):
  config = config_lib.load("configs/fla_folder.py:smoke")
  config.data.root = own_data_run["data"]
  return config


@pytest.mark.slow
def test_exported_model_reloads_without_flaseg_and_gives_the_logits(own_data_run, tmp_path,
                                                                      monkeypatch):
  base = own_data_run["base"]
  monkeypatch.chdir(own_data.REPO)
  result = own_data.run(own_data.EXPORT, base)
  assert result.returncode == 0, result.stderr[-3000:]
  artefact = os.path.join(base, "mine.jax")
  with open(artefact + ".json") as f:
    info = json.load(f)
  assert info["input"]["shape"] == ["b", "40", "56", "3"] and info["class_names"] == \
      own_data.CLASSES
  printed = _run_and_compare(RELOAD, artefact, own_data_run, tmp_path)
  assert printed == []  # no flaseg module loaded


def _run_and_compare(script, artefact, own_data_run, tmp_path):
  """Runs `script` (artefact, images.npy, out.npz) in a fresh process on 3 images and checks
  its labels and probabilities for batches 1 and 3 against the trained model's logits,
  restored by the trainer's path; returns the JSON of the script's last printed line."""
  rng = np.random.default_rng(0)
  images = np.stack([own_data.scene(rng, *own_data.SIZE)[0] for _ in range(3)])
  np.save(tmp_path / "images.npy", images)
  run = subprocess.run([sys.executable, "-c", script, artefact, str(tmp_path / "images.npy"),
                        str(tmp_path / "out.npz")], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  config = _config(own_data_run)
  config.model.num_classes = 3
  model, state, _ = train.restore_latest(config, own_data_run["workdir"], parallel.make_mesh())
  logits = np.asarray(model.apply({"params": state.params, **state.model_state}, images)["out"],
                      np.float64)
  log_softmax = logits - logits.max(-1, keepdims=True)
  log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
  for b in (1, 3):
    assert out[f"probs_{b}"].shape == (b, 40, 56, 3)
    np.testing.assert_allclose(np.log(out[f"probs_{b}"]), log_softmax[:b], atol=2e-5)
    np.testing.assert_array_equal(out[f"labels_{b}"], logits[:b].argmax(-1))
  return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_onnx_model_run_by_onnxruntime_gives_the_logits(own_data_run, tmp_path, monkeypatch):
  pytest.importorskip("jax2onnx", reason="bash scripts/install_onnx.sh")
  pytest.importorskip("onnxruntime", reason="bash scripts/install_onnx.sh")
  base = own_data_run["base"]
  monkeypatch.chdir(own_data.REPO)
  result = own_data.run(own_data.EXPORT_ONNX, base)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]  # jax2onnx's logging quiet
  model = os.path.join(base, "mine.onnx")
  with open(model + ".json") as f:
    info = json.load(f)
  assert info["input"]["shape"] == ["B", "40", "56", "3"] and info["platforms"] == ["onnx"]
  printed = _run_and_compare(ONNX_RUN, model, own_data_run, tmp_path)
  assert printed == ["images", "labels", "probabilities"]


@pytest.mark.slow
def test_onnx_needs_a_fixed_size():
  result = subprocess.run([sys.executable, "-m", "flaseg.export_model",
                           "--config=configs/quickstart.py:smoke", "--weights=none.npz",
                           "--output=x.onnx", "--format=onnx"], cwd=own_data.REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "flaseg.export_model: error: --format=onnx: pass --size=HxW (the ONNX graph has a fixed "
      "height and width)"]


@pytest.mark.slow
def test_symbolic_height_and_width_are_refused_in_one_line(own_data_run):
  config = _config(own_data_run)
  loaded = predict.load_model(config, workdir=own_data_run["workdir"])
  with pytest.raises(ConfigError, match=r"height and width cannot be symbolic.*--size=HxW") as e:
    export_model.export_inference(loaded, config, size=None)
  assert "\n" not in str(e.value)


def test_parse_size():
  assert export_model.parse_size("40x56") == (40, 56) and export_model.parse_size("") is None
  for bad in ("40", "0x5", "axb"):
    with pytest.raises(ConfigError, match="--size"):
      export_model.parse_size(bad)
