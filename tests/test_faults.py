"""Faults a hostile but realistic user meets (issue 16): non-finite training, interrupted and
failed saves, corrupt checkpoints, changed configs on resume, read-only and shared workdirs,
converter errors, 16-bit images. Each asserts the exit status, the one line, and that what was
written before (checkpoints, metrics) is intact.

The subprocess runs share one trained workdir (`trained`: interrupted by Ctrl-C, then resumed)
and a persistent compilation cache, so a run of the same config compiles nothing again."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest

from flaseg import checkpoint, config_lib, convert, train
from flaseg.data import datasets
from flaseg.errors import ConfigError, UserError
from flaseg.workdir import Lock, truncate_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=configs/quickstart.py:smoke"
BASE = ("--config.train.steps=6", "--config.checkpoint.every=3", "--config.train.log_every=1")
UNWRITABLE = "/sys/kernel"  # sysfs: no one, root included, creates files there


@pytest.fixture(scope="module")
def env():
  """The subprocesses' environment: the session's (conftest.py: its compilation cache)."""
  return dict(os.environ)


def _cmd(workdir, *args):
  return [sys.executable, "-m", "flaseg.main", SMOKE, f"--workdir={workdir}", *args]


def _run(env, workdir, *args, preexec_fn=None):
  return subprocess.run(_cmd(workdir, *args), cwd=REPO, capture_output=True, text=True,
                        timeout=600, env=env, preexec_fn=preexec_fn)


def _records(workdir, name="metrics.jsonl"):
  with open(os.path.join(workdir, name)) as f:
    return [json.loads(line) for line in f]


def _train_steps(records):
  return [r["step"] for r in records if "loss" in r]


def _lines(text):
  return [line for line in text.strip().splitlines() if line.strip()]


def _one_line_error(res, *fragments, noise_before=False):
  """Exit status 2, and the error is one line, the last one printed, with `fragments`; no
  traceback unless `noise_before` (tensorstore's threads print theirs as a save fails)."""
  assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
  assert noise_before or "Traceback" not in res.stderr, res.stderr[-3000:]
  errors = [line for line in _lines(res.stderr) if line.startswith("flaseg: error:")]
  assert len(errors) == 1 and _lines(res.stderr)[-1] == errors[0], res.stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  return errors[0]


def _tree_bytes(folder):
  """{relative path: content} of every file under `folder`."""
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        out[os.path.relpath(os.path.join(root, name), folder)] = f.read()
  return out


def _ckpts(workdir):
  return sorted(os.listdir(os.path.join(workdir, "checkpoints")))


def _copy(trained, tmp_path, name="w"):
  workdir = str(tmp_path / name)
  shutil.copytree(trained, workdir)
  return workdir


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env):
  """A smoke run of 6 steps (checkpoints 3 and 6) that was stopped by Ctrl-C after its first
  logged step, then resumed to the end. Returns (workdir, the Ctrl-C run's result, a copy of
  the workdir right after Ctrl-C)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "w")
  proc = subprocess.Popen(_cmd(workdir, *BASE), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    try:
      logged = os.path.exists(path) and _train_steps(_records(workdir))
    except ValueError:  # a line being written
      logged = False
    if logged:
      proc.send_signal(signal.SIGINT)
      break
    time.sleep(0.02)
  out, err = proc.communicate(timeout=300)
  interrupted = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
  after_sigint = str(tmp_path_factory.mktemp("after_sigint") / "w")
  shutil.copytree(workdir, after_sigint)
  res = _run(env, workdir, *BASE)
  assert res.returncode == 0, res.stderr[-3000:]
  return workdir, interrupted, after_sigint


# ---------------------------------------------------------------------------------------
# Training runs (subprocesses).

@pytest.mark.slow
def test_ctrl_c_saves_and_exits_like_sigterm(trained):
  """Ctrl-C: the step's checkpoint is saved and complete (its checksums verify), exit 130,
  the message is the last line; the resumed run logs every step once."""
  workdir, res, after = trained
  assert res.returncode == 130, res.stderr[-3000:]
  assert "Traceback" not in res.stderr
  (saved,) = checkpoint.saved_steps(os.path.join(after, "checkpoints"))
  assert 1 <= saved < 6
  assert _lines(res.stdout)[-1] == f"SIGINT: saved checkpoint {saved} in {workdir}/checkpoints; exiting"
  assert checkpoint.verify(os.path.join(after, "checkpoints", str(saved))) is None
  assert not [n for n in os.listdir(os.path.join(after, "checkpoints")) if "tmp" in n]
  assert max(_train_steps(_records(after))) == saved
  assert not os.path.exists(os.path.join(after, "flaseg.lock"))  # released on the way out
  assert _train_steps(_records(workdir)) == [1, 2, 3, 4, 5, 6]
  assert _ckpts(workdir) == ["3", "6"]


@pytest.mark.slow
@pytest.mark.parametrize("loss", [(), ("--config.loss.ohem=none",)], ids=["ohem", "no_ohem"])
def test_non_finite_step_stops_before_saving(trained, tmp_path, env, loss):
  """lr=1e6 (with the quickstart's OHEM, whose loss reads 0.0 on NaN logits, and without it):
  the run stops on the first non-finite step, names it, saves nothing after it; checkpoint 3
  stays complete."""
  workdir = _copy(trained[0], tmp_path)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "6"))  # resume from 3: 3 steps left
  before = _tree_bytes(os.path.join(workdir, "checkpoints", "3"))
  res = _run(env, workdir, *BASE, "--config.optim.lr=1e6", *loss,
             "--config.checkpoint.allow_changes=True")
  line = _one_line_error(res, "are not finite", "stopped without saving it",
                         f"the last good checkpoint is {workdir}/checkpoints/3")
  bad = int(line.split("step ")[1].split(":")[0])
  assert 4 <= bad <= 6
  assert _ckpts(workdir) == ["3"]
  assert _tree_bytes(os.path.join(workdir, "checkpoints", "3")) == before
  assert checkpoint.verify(os.path.join(workdir, "checkpoints", "3")) is None
  logged = _train_steps(_records(workdir))
  assert logged == list(range(1, bad))  # the bad step is not logged; earlier ones once
  assert all(np.isfinite(r["loss"]) for r in _records(workdir) if "loss" in r)


@pytest.mark.slow
def test_corrupt_checkpoint_is_named_then_restore_step_resumes(trained, tmp_path, env):
  """4 KiB of garbage in a data file of checkpoint 6: the resume stops naming it and the
  checkpoint that verifies; `restore_step=3` resumes from 3 exactly (the re-run steps have the
  losses of the first run), moves checkpoint 6 and the records after step 3 aside (nothing
  lost), and no step appears twice. A stale lock (its process gone) is taken over."""
  workdir = _copy(trained[0], tmp_path)
  data_dir = os.path.join(workdir, "checkpoints", "6", "state", "ocdbt.process_0", "d")
  victim = max(os.listdir(data_dir), key=lambda n: os.path.getsize(os.path.join(data_dir, n)))
  with open(os.path.join(data_dir, victim), "r+b") as f:
    f.seek(64)
    f.write(np.random.default_rng(0).bytes(4096))
  corrupt = _tree_bytes(os.path.join(workdir, "checkpoints", "6"))
  first = _records(workdir)
  res = _run(env, workdir, *BASE)
  _one_line_error(res, f"checkpoint {workdir}/checkpoints/6 is corrupt",
                  f"file state/ocdbt.process_0/d/{victim} has changed",
                  "earlier checkpoints that verify: steps 3",
                  "--config.checkpoint.restore_step=3")
  assert _records(workdir) == first and _ckpts(workdir) == ["3", "6"]

  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()
  with open(os.path.join(workdir, "flaseg.lock"), "w") as f:
    json.dump({"host": socket.gethostname(), "pid": gone.pid, "start": "earlier"}, f)
  res = _run(env, workdir, *BASE, "--config.checkpoint.restore_step=3")
  assert res.returncode == 0, res.stderr[-3000:]
  assert "taking over the stale lock" in res.stderr
  records = _records(workdir)
  assert _train_steps(records) == [1, 2, 3, 4, 5, 6]
  old = {r["step"]: r["loss"] for r in first if "loss" in r}
  for r in records:
    if "loss" in r:
      assert r["loss"] == old[r["step"]], r["step"]
  aside = _records(workdir, "metrics_set_aside.jsonl")
  assert aside == [r for r in first if r["step"] > 3]
  assert _tree_bytes(os.path.join(workdir, "checkpoints_set_aside", "6")) == corrupt
  assert _ckpts(workdir) == ["3", "6"]
  for step in (3, 6):
    assert checkpoint.verify(os.path.join(workdir, "checkpoints", str(step))) is None


@pytest.mark.slow
def test_disk_full_during_a_save(trained, tmp_path, env):
  """Files may not grow past 200 KB (the kernel's per-process limit, as a full disk): the save
  of checkpoint 6 fails, its unfinished folder is removed, checkpoint 3 is intact and the
  message is the last line (orbax's and tensorstore's background threads still print their
  own tracebacks before it)."""
  import resource
  workdir = _copy(trained[0], tmp_path)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "6"))
  before = _tree_bytes(os.path.join(workdir, "checkpoints", "3"))
  limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
  res = _run(env, workdir, *BASE, preexec_fn=limit)
  _one_line_error(res, f"cannot save checkpoint {workdir}/checkpoints/6",
                  "File too large", f"the last complete checkpoint is {workdir}/checkpoints/3",
                  noise_before=True)
  assert not [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if "tmp" in n]
  assert _ckpts(workdir) == ["3"]
  assert _tree_bytes(os.path.join(workdir, "checkpoints", "3")) == before


@pytest.mark.slow
def test_resume_with_changed_settings_is_refused(trained, tmp_path, env):
  """Another batch size and momentum: one line listing both keys, before anything compiles;
  another width (allowed): the first parameter whose shape differs is named."""
  workdir = _copy(trained[0], tmp_path)
  before = _tree_bytes(os.path.join(workdir, "checkpoints"))
  res = _run(env, workdir, *BASE, "--config.train.batch_size=16",
             "--config.optim.momentum=0.5", "--config.train.steps=9")
  _one_line_error(res, "config.optim.momentum, config.train.batch_size;",
                  f"checkpoint {workdir}/checkpoints/6", "allow_changes=True")
  assert "[train]" not in res.stdout
  res = _run(env, workdir, *BASE, "--config.model.backbone.width=16",
             "--config.checkpoint.allow_changes=True")
  _one_line_error(res, f"checkpoint {workdir}/checkpoints/6 does not fit the model: "
                  "params/backbone/")
  assert len(_lines(res.stderr)) <= 3, res.stderr  # no orbax dump
  assert _tree_bytes(os.path.join(workdir, "checkpoints")) == before


@pytest.mark.slow
def test_second_run_in_a_workdir_is_refused(trained, tmp_path, env):
  workdir = _copy(trained[0], tmp_path)
  with open(os.path.join(workdir, "flaseg.lock"), "w") as f:  # a live process: this one
    json.dump({"host": socket.gethostname(), "pid": os.getpid(), "start": "now"}, f)
  res = _run(env, workdir, *BASE, "--config.train.steps=9")
  _one_line_error(res, f"workdir {workdir} is in use by pid {os.getpid()}")
  assert "[train]" not in res.stdout
  assert _records(workdir) == _records(trained[0])


@pytest.mark.slow
def test_bad_values_and_folders_are_one_line_before_work(tmp_path, env):
  """A bad value, a read-only checkpoint folder, a config flag with a space: exit 2, one
  line, nothing created."""
  res = _run(env, str(tmp_path / "a"), "--config.checkpoint.every=0")
  _one_line_error(res, "config.checkpoint.every=0")
  assert not os.path.exists(tmp_path / "a")
  workdir = tmp_path / "b"
  workdir.mkdir()
  os.symlink(UNWRITABLE, workdir / "checkpoints")
  res = _run(env, str(workdir), "--config.train.steps=2")
  _one_line_error(res, "is not writable")
  res = subprocess.run([sys.executable, "-m", "flaseg.main", "--config", "configs/nope.py",
                        f"--workdir={tmp_path / 'c'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env=env)
  _one_line_error(res, "no such config file configs/nope.py")


# ---------------------------------------------------------------------------------------
# In-process checks.

def _smoke():
  return config_lib.load(os.path.join(REPO, "configs/quickstart.py:smoke"))


@pytest.mark.parametrize("key,value,message", [
    ("checkpoint.every", 0, "config.checkpoint.every=0: expected an integer >= 1"),
    ("checkpoint.max_to_keep", 0, "config.checkpoint.max_to_keep=0"),
    ("train.steps", 0, "config.train.steps=0"),
    ("train.steps", -5, "config.train.steps=-5"),
    ("train.log_every", 0, "config.train.log_every=0"),
    ("checkpoint.restore_step", -1, "config.checkpoint.restore_step=-1"),
    ("data.crop_size", (-32, 48), "config.data.crop_size=(-32, 48)"),
    ("data.scale_range", (0.0, 1.0), "config.data.scale_range=(0.0, 1.0)"),
    ("eval.scales", (), "config.eval.scales=()"),
    ("eval.stride", (0, 8), "config.eval.stride=(0, 8)"),
    ("eval.mode", "sliding", "config.eval.mode='sliding'"),
    ("loss.ohem", "online", "config.loss.ohem='online'"),
    ("optim.warmup", "cosine", "config.optim.warmup='cosine'"),
    ("optim.lr", -1.0, "config.optim.lr=-1.0"),
])
def test_check_config_refuses(key, value, message):
  config = _smoke()
  group, name = key.split(".")
  config[group][name] = value
  with pytest.raises(ConfigError) as e:
    train.check_config(config)
  assert message in str(e.value)
  train.check_config(_smoke())  # the unchanged config passes


def test_unwritable_workdir_and_export_dir(tmp_path):
  config = _smoke()
  with pytest.raises(ConfigError, match=f"--workdir={UNWRITABLE}/w is not writable"):
    train.train_and_evaluate(config, f"{UNWRITABLE}/w")
  (tmp_path / "file").write_text("x")
  with pytest.raises(ConfigError, match="is a file"):
    train.train_and_evaluate(config, str(tmp_path / "file"))
  config.eval.export_dir = f"{UNWRITABLE}/export"
  with pytest.raises(ConfigError, match="config.eval.export_dir=.* is not writable"):
    train.train_and_evaluate(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "flaseg.lock")


def _tiny_state(value):
  import jax.numpy as jnp
  return {"params": {"w": jnp.full((4, 3), value, jnp.float32)}}


def _cfg():
  return ml_collections.ConfigDict({"model": {"width": 1}})


def test_saver_finishes_on_error_and_rotation_keeps_verified(tmp_path):
  """An exception while a save is in flight: the save is finished and sealed. Rotation keeps
  the `max_to_keep` newest checkpoints; a corrupt one is named with the good earlier steps;
  restore_step picks one."""
  directory = str(tmp_path / "checkpoints")
  with pytest.raises(KeyError):
    with checkpoint.Saver(str(tmp_path), 2) as saver:
      saver.save(1, _tiny_state(1.0), None, _cfg())
      raise KeyError("boom")  # e.g. an evaluation that fails during the save
  assert checkpoint.saved_steps(directory) == [1]
  assert checkpoint.verify(os.path.join(directory, "1")) is None
  with checkpoint.Saver(str(tmp_path), 2) as saver:
    for step in (2, 3, 4):
      saver.save(step, _tiny_state(float(step)), None, _cfg())
  assert checkpoint.saved_steps(directory) == [3, 4]
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".deleting")]
  files = checkpoint.file_checksums(os.path.join(directory, "4"))
  victim = os.path.join(directory, "4", max(files, key=lambda r: os.path.getsize(
      os.path.join(directory, "4", r))))
  with open(victim, "r+b") as f:
    f.write(b"\0garbage")
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"checkpoints/4 is corrupt: file .* has changed.*verify: steps 3;"):
    checkpoint.choose_step(directory)
  assert checkpoint.choose_step(directory, 3) == 3
  with pytest.raises(UserError, match=r"restore_step=7: .*saved steps: \[3, 4\]"):
    checkpoint.choose_step(directory, 7)
  with checkpoint.Saver(str(tmp_path), 1) as saver:  # rotation after a new save: 5 only
    saver.save(5, _tiny_state(5.0), None, _cfg())
  assert checkpoint.saved_steps(directory) == [5]


def test_changed_keys():
  saved = {"seed": 0, "model": {"width": 8, "lowering": {"conv": "auto"}},
           "train": {"batch_size": 8, "steps": 6}, "data": {"crop": [32, 48]}}
  new = {"seed": 0, "model": {"width": 16, "lowering": {"conv": "direct"}},
         "train": {"batch_size": 16, "steps": 60}, "data": {"crop": (32, 48)}}
  assert checkpoint.changed_keys(saved, new, train.RESUME_CHECKED, train.RESUME_FREE) == [
      "model.width", "train.batch_size"]


def test_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path):
  with Lock(str(tmp_path)):
    owner = json.loads((tmp_path / "flaseg.lock").read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    with pytest.raises(UserError, match=f"in use by pid {os.getpid()} on "):
      with Lock(str(tmp_path)):
        pass
  assert not (tmp_path / "flaseg.lock").exists()
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()
  (tmp_path / "flaseg.lock").write_text(json.dumps(
      {"host": socket.gethostname(), "pid": gone.pid, "start": "x"}))
  with Lock(str(tmp_path)):
    assert json.loads((tmp_path / "flaseg.lock").read_text())["pid"] == os.getpid()


def test_truncate_metrics_moves_later_records_aside(tmp_path):
  lines = [json.dumps({"step": s, "loss": float(s)}) for s in range(1, 9)]
  lines.insert(6, json.dumps({"step": 6, "split": "val", "miou": 0.5}))
  (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 9, "lo')
  assert truncate_metrics(str(tmp_path), 6) == 3
  kept = _records(str(tmp_path))
  assert [r["step"] for r in kept] == [1, 2, 3, 4, 5, 6, 6]
  aside = (tmp_path / "metrics_set_aside.jsonl").read_text().splitlines()
  assert aside == [lines[-2], lines[-1], '{"step": 9, "lo']


# ---------------------------------------------------------------------------------------
# Converter.

def _target():
  """A torchvision-named stem: conv1 (7x7, 3 -> 4) and bn1."""
  import jax
  s = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)
  return {"params": {"backbone": {"stem_conv1": {"kernel": s(7, 7, 3, 4)},
                                  "stem_bn1": {"scale": s(4), "bias": s(4)}}},
          "batch_stats": {"backbone": {"stem_bn1": {"mean": s(4), "var": s(4)}}}}


def _sd():
  rng = np.random.default_rng(0)
  return {"conv1.weight": rng.standard_normal((4, 3, 7, 7)).astype(np.float32),
          "bn1.weight": np.ones(4, np.float32), "bn1.bias": np.zeros(4, np.float32),
          "bn1.running_mean": np.zeros(4, np.float32), "bn1.running_var": np.ones(4, np.float32),
          "bn1.num_batches_tracked": np.array(3)}


def test_convert_refuses_non_finite_and_integer_tensors():
  cfg = {"stem": "torchvision"}
  out = convert.convert(_sd(), "torchvision", _target(), cfg, "backbone")
  np.testing.assert_array_equal(out["params"]["backbone"]["stem_conv1"]["kernel"],
                                _sd()["conv1.weight"].transpose(2, 3, 1, 0))
  sd = _sd()
  sd["bn1.running_var"][2] = np.nan
  sd["bn1.bias"] = np.zeros(4, np.int64)
  with pytest.raises(convert.ConversionError) as e:
    convert.convert(sd, "torchvision", _target(), cfg, "backbone")
  text = str(e.value)
  assert "not floating point (1):\n    bn1.bias: int64" in text
  assert "not finite (1):\n    bn1.running_var: 1 of 4 values are NaN or Inf" in text


def test_convert_reads_safetensors(tmp_path):
  safetensors = pytest.importorskip("safetensors.numpy")
  safetensors.save_file(_sd(), str(tmp_path / "sd.safetensors"))
  got = convert.read_state_dict(str(tmp_path / "sd.safetensors"))
  for k, v in _sd().items():
    np.testing.assert_array_equal(got[k], v)


class _Payload:
  """Unpickling this calls os.mkdir(marker): code that runs when the file is loaded."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.mkdir, (self.marker,))


def test_pth_with_a_code_payload_is_refused_and_nothing_runs(tmp_path):
  torch = pytest.importorskip("torch")
  marker = str(tmp_path / "payload_ran")
  sd = {"conv1.weight": torch.zeros(4, 3, 7, 7), "evil": _Payload(marker)}
  torch.save(sd, str(tmp_path / "evil.pth"))
  assert not os.path.exists(marker)
  with pytest.raises(convert.ConversionError, match="refused .*evil.pth: it holds pickled"):
    convert.read_state_dict(str(tmp_path / "evil.pth"))
  assert not os.path.exists(marker)
  with open(tmp_path / "evil.pth", "rb") as f:  # the payload is real: a plain load runs it
    torch.load(f, weights_only=False)
  assert os.path.isdir(marker)


@pytest.mark.slow
def test_convert_cli_errors_are_one_line_and_exit_2(tmp_path):
  np.savez(tmp_path / "sd.npz", **{"conv1.0.weight": np.zeros((4, 3, 7, 7), np.float32),
                                   "extra.weight": np.zeros(3, np.float32)})
  base = [sys.executable, "-m", "flaseg.convert", "--source=flanet",
          f"--checkpoint={tmp_path / 'sd.npz'}", "--config=configs/quickstart.py:smoke",
          "--config.model.num_classes=5"]
  res = subprocess.run(base + [f"--out={tmp_path / 'out'}"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
  lines = _lines(res.stderr)
  assert lines[0] == "flaseg.convert: error: checkpoint does not match the model " \
      "(source=flanet, part=backbone):"
  assert "    extra.weight" in lines and "  wrong shape (1):" in lines  # the names stay listed
  assert not os.path.exists(tmp_path / "out")
  (tmp_path / "exists").mkdir()
  for out, message in ((tmp_path / "exists", "exists; give a new folder"),
                       (f"{UNWRITABLE}/out", "--out's parent folder=/sys/kernel is not writable")):
    res = subprocess.run(base + [f"--out={out}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and len(_lines(res.stderr)) == 1, res.stderr[-3000:]
    assert message in res.stderr


# ---------------------------------------------------------------------------------------
# 16-bit images.

def test_16_bit_images_are_scaled_and_labels_keep_their_values(tmp_path):
  from PIL import Image
  values = np.array([[0, 257, 32768, 65535]], np.uint16)
  Image.fromarray(values).save(tmp_path / "g16.png")
  image = datasets.read_image(str(tmp_path / "g16.png"))
  assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
  np.testing.assert_array_equal(image[..., 0], [[0, 1, 128, 255]])  # round(v * 255 / 65535)
  np.testing.assert_array_equal(image[..., 1], image[..., 2])
  label = datasets.read_label(str(tmp_path / "g16.png"))
  np.testing.assert_array_equal(label, values)
  lut = np.full(256, -1, np.int16)
  lut[[0, 1]] = [0, 1]
  np.testing.assert_array_equal(datasets.map_label(np.array([[0, 1]], np.uint16), lut, "x",
                                                   "T"), [[0, 1]])
  with pytest.raises(datasets.DatasetError, match="has values 257, 32768, 65535 outside"):
    datasets.map_label(label, lut, "x", "T")
