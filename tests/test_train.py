"""End to end through the CLI: metrics.jsonl, predictions, --mode=eval, exact resume after
SIGKILL, SIGTERM checkpointing, and one-line errors for bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=configs/quickstart.py:smoke"


def _cmd(workdir, *args):
  return [sys.executable, "-m", "flaseg.main", SMOKE, f"--workdir={workdir}", *args]


def _run(workdir, *args, check=True):
  res = subprocess.run(_cmd(workdir, *args), cwd=REPO, capture_output=True, text=True,
                       timeout=600)
  if check:
    assert res.returncode == 0, res.stderr[-3000:]
  return res


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _train(records):
  return {r["step"]: r for r in records if "loss" in r}


def _evals(records):
  return [r for r in records if "miou" in r]


RESUME_ARGS = ("--config.train.steps=10", "--config.checkpoint.every=3",
               "--config.train.log_every=1")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run") / "a")
  _run(workdir, *RESUME_ARGS)
  return workdir


@pytest.mark.slow
def test_smoke_run_writes_metrics_checkpoints_predictions(uninterrupted):
  records = _records(uninterrupted)
  train = _train(records)
  assert sorted(train) == list(range(1, 11))
  for r in train.values():
    assert {"step", "loss", "lr", "img_per_s"} <= set(r) and np.isfinite(r["loss"])
  assert train[1]["lr"] == pytest.approx(4e-2)  # the first step runs at the base lr
  (final,) = _evals(records)
  assert final["step"] == 10 and 0.0 <= final["miou"] <= 1.0
  assert len(final["per_class_iou"]) == 9 and 0.0 <= final["pixel_acc"] <= 1.0
  assert sorted(os.listdir(os.path.join(uninterrupted, "checkpoints"))) == ["10", "9"]
  pngs = os.listdir(os.path.join(uninterrupted, "predictions", "step_10"))
  assert len(pngs) == 2


@pytest.mark.slow
def test_eval_mode_reproduces_the_final_evaluation(uninterrupted, tmp_path):
  res = _run(uninterrupted, *RESUME_ARGS, "--mode=eval")
  evals = _evals(_records(uninterrupted))
  assert len(evals) == 2 and evals[1]["step"] == 10
  assert evals[1]["miou"] == evals[0]["miou"]
  assert "mIoU" in res.stdout


@pytest.mark.slow
def test_sigkill_then_restart_ends_exactly_like_an_uninterrupted_run(uninterrupted, tmp_path):
  workdir = str(tmp_path / "b")
  proc = subprocess.Popen(_cmd(workdir, *RESUME_ARGS), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 600
  killed_after = None
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path):
      steps = [r["step"] for r in _records(workdir) if "loss" in r]
      if steps and max(steps) >= 5:
        proc.send_signal(signal.SIGKILL)
        killed_after = max(steps)
        break
    time.sleep(0.05)
  proc.wait()
  assert killed_after is not None and killed_after < 10, "the run ended before it was killed"
  assert not _evals(_records(workdir))
  _run(workdir, *RESUME_ARGS)
  a, b = _records(uninterrupted), _records(workdir)
  for step, rec in _train(a).items():   # every step logged after the restart is identical
    assert _train(b)[step]["loss"] == rec["loss"], step
  assert _evals(b)[-1]["miou"] == _evals(a)[-1]["miou"]
  assert _evals(b)[-1]["per_class_iou"] == _evals(a)[-1]["per_class_iou"]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
  workdir = str(tmp_path / "c")
  proc = subprocess.Popen(_cmd(workdir, "--config.train.steps=1000",
                               "--config.checkpoint.every=500", "--config.train.log_every=1"),
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 600
  while time.time() < deadline and not (os.path.exists(path) and _train(_records(workdir))):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, err[-2000:]
  saved = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
  assert len(saved) == 1 and 1 <= saved[0] < 500
  assert saved[0] >= max(_train(_records(workdir)))


@pytest.mark.slow
@pytest.mark.parametrize("args,message", [
    (("--config.train.stepz=3",), "stepz"),
    (("--config.train.batch_size=7",), "config.train.batch_size=7 is not divisible"),
    (("--config.model.head=nope",), "config.model.head='nope'"),
    (("--config.data.name=cityscapes", "--config.data.root=/no/such/cityscapes"),
     "/no/such/cityscapes"),
    (("--config.eval.mode=sliding",), "config.eval.mode='sliding'"),
    (("--config.model.lowering.conv=fast",), "config.model.lowering.conv='fast'"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
  res = _run(str(tmp_path / "w"), *args, check=False)
  assert res.returncode == 2
  assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
  assert "Traceback" not in res.stderr
  assert "[train]" not in res.stdout  # found before any training step


BROKEN_HEAD = """
import sys
import flax.linen as nn
from absl import app
from flaseg import main, models

class BrokenHead(nn.Module):
  num_classes: int
  channels: int = 0       # the quickstart's head_kwargs
  aux_channels: int = 0
  dtype: object = None
  lowering: object = None

  @nn.compact
  def __call__(self, feats, train=False):
    return {"out": feats["c6"]}  # a bug: the backbone has no 'c6'

models.HEADS["broken"] = BrokenHead
app.run(main.main, flags_parser=main.parse_flags)
"""


@pytest.mark.slow
def test_a_bug_in_flaseg_shows_its_traceback(tmp_path):
  """Only user errors (flaseg.errors.UserError) become one line: a KeyError inside a model
  is a bug and shows its traceback, not 'unknown config key'."""
  cmd = [sys.executable, "-c", BROKEN_HEAD, SMOKE,
         f"--workdir={tmp_path / 'w'}", "--config.model.head=broken"]
  res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert res.returncode != 0
  assert "Traceback" in res.stderr and "KeyError: 'c6'" in res.stderr
  assert "flaseg: error" not in res.stderr and "unknown config key" not in res.stderr


@pytest.mark.slow
def test_missing_workdir_parent_is_one_clear_line(tmp_path):
  res = _run(str(tmp_path / "missing" / "w"), check=False)
  assert res.returncode != 0 and "parent folder" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_corrupt_checkpoint_is_reported_and_kept(uninterrupted, tmp_path):
  import shutil
  workdir = str(tmp_path / "d")
  shutil.copytree(uninterrupted, workdir)
  state_dir = os.path.join(workdir, "checkpoints", "10", "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  res = _run(workdir, "--config.train.steps=20", check=False)
  assert res.returncode != 0 and "Traceback" not in res.stderr
  assert "checkpoints/10 is corrupt" in res.stderr and "verify: steps 9" in res.stderr
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before
  with open(os.path.join(state_dir, "_METADATA"), "rb") as f:
    assert f.read() == b"garbage"


@pytest.mark.slow
def test_eval_mode_on_converted_weights(tmp_path):
  """`--mode=eval` in an empty workdir evaluates `config.init.checkpoint` (as written by
  `python -m flaseg.convert`) at step 0; weights of another model are a one-line error."""
  import jax
  from flaseg import config_lib, convert
  from flaseg.models import build_model, init_variables
  config = config_lib.load(os.path.join(REPO, "configs/quickstart.py:smoke"))
  config.model.num_classes = 9
  params, state = init_variables(build_model(config.model), jax.random.key(3),
                                 (1, *config.data.crop_size, 3))
  weights = convert.save_converted({"params": params, "model_state": state},
                                   str(tmp_path / "weights"))
  workdir = str(tmp_path / "e")
  res = _run(workdir, "--mode=eval", f"--config.init.checkpoint={weights}")
  (record,) = _evals(_records(workdir))
  assert record["step"] == 0 and 0.0 <= record["miou"] <= 1.0 and "mIoU" in res.stdout
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))
  res = _run(str(tmp_path / "f"), "--mode=eval", f"--config.init.checkpoint={weights}",
             "--config.model.backbone.depth=50", check=False)
  assert res.returncode != 0 and "Traceback" not in res.stderr
  assert "does not match the model" in res.stderr
