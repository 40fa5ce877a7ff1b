"""scripts/benchmark.py: one JSON object with the throughput, FLOP and peak-fraction fields,
and with `--reference=torch` the PyTorch peer's figures from the same run."""
import json
import os
import subprocess
import sys

import pytest

from flaseg import config_lib
from reference.torch import benchmark as torch_benchmark
from reference.torch.imports import declare_torchvision_ops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  env = dict(os.environ, XLA_FLAGS="")  # one CPU device, as a user's machine
  return subprocess.run([sys.executable, "scripts/benchmark.py", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_benchmark_json_with_torch_peer():
  pytest.importorskip("torch")
  pytest.importorskip("mmseg")
  r = _run("--config=configs/danet_cityscapes.py:smoke", "--size=24x40", "--batch=2",
           "--steps=1", "--warmup=1", "--matmul=256", "--reference=torch", "--alternate=2",
           "--json")
  assert r.returncode == 0, r.stderr[-3000:]
  record = json.loads(r.stdout.strip().splitlines()[-1])
  assert record["config"] == "danet" and record["size"] == [24, 40] and record["batch"] == 2
  for key in ("train_img_per_s", "infer_img_per_s", "peak_memory_mb", "train_gflop_per_step",
              "matmul_peak_gflop_per_s", "train_fraction_of_matmul_peak",
              "train_model_gflop_per_step", "infer_model_gflop_per_step", "train_mfu",
              "infer_mfu",
              "reference_train_img_per_s", "reference_infer_img_per_s"):
    assert record[key] > 0, key
  assert record["alternated_rounds"] == 2
  for kind in ("train", "infer"):
    flaseg_s = record[f"alternated_{kind}_step_s"]
    peer_s = record[f"alternated_reference_{kind}_step_s"]
    assert flaseg_s > 0 and peer_s > 0
    assert record[f"alternated_{kind}_ratio"] == pytest.approx(peer_s / flaseg_s)
  # A train step costs more than an inference, and about 3x its FLOPs.
  assert 2 < record["train_gflop_per_step"] / record["infer_gflop_per_step"] < 4.5
  assert record["reference"].startswith("mmseg")


def test_alternate_needs_the_torch_peer():
  r = _run("--config=configs/quickstart.py", "--alternate=3", "--json")
  assert r.returncode != 0
  assert r.stderr.strip().splitlines()[-1] == (
      "benchmark.py: --alternate=3 needs --reference=torch and no --realtime")


def test_torch_fla_reference_trains_and_infers():
  """The benchmark's FLANet peer runs real steps: SGD on its fixed batch lowers the loss,
  inference gives a label map of the input's size, and the timings come from those steps."""
  torch = pytest.importorskip("torch")
  torch.set_num_threads(2)
  config = config_lib.load(os.path.join(REPO, "configs/fla_cityscapes.py:smoke"))
  config.model.num_classes = 19
  config.optim.lr = 0.1  # the smoke config's 0.01 moves the loss by less than dropout's noise
  train_step, infer, description = torch_benchmark.make_steps(config, (24, 40), 2)
  assert description.startswith("torch FLANet")
  losses = [float(train_step()) for _ in range(8)]
  assert losses[-1] < losses[0] - 0.05, losses  # about 0.1 lower, noise about 0.02
  pred = infer()
  assert pred.shape == (2, 24, 40) and pred.dtype == torch.int64
  assert 0 <= int(pred.min()) and int(pred.max()) < 19
  assert torch.equal(pred, infer())  # eval mode: no dropout, BN statistics fixed
  record = torch_benchmark.benchmark(config, (24, 40), 2, steps=1, warmup=0)
  assert record["reference"].startswith("torch FLANet")
  assert record["reference_train_img_per_s"] == 2 / record["reference_train_step_s"]


@pytest.mark.slow
def test_reference_names_the_heads_it_covers():
  config = config_lib.load(os.path.join(REPO, "configs/sanet_cityscapes.py:smoke"))
  for fn in (torch_benchmark.check, torch_benchmark.build):
    with pytest.raises(ValueError, match="no PyTorch reference for model.head='sanet'.*fla"):
      fn(config)
  r = _run("--config=configs/sanet_cityscapes.py:smoke", "--reference=torch", "--json")
  assert r.returncode != 0
  assert "no PyTorch reference for model.head='sanet'" in r.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_realtime_protocol_fps_next_to_the_official_attanet():
  """`--realtime`: AttaNet's protocol (resize inside the timed function) in flaseg and, with
  --reference=torch, the official PyTorch AttaNet in the same run."""
  torch = pytest.importorskip("torch")
  declare_torchvision_ops(torch)  # else importing torchvision here fails (reference/torch)
  pytest.importorskip("torchvision")
  r = _run("--config=configs/attanet_cityscapes.py:realtime,smoke", "--realtime",
           "--size=64x128", "--steps=1", "--warmup=1", "--reference=torch", "--json")
  assert r.returncode == 0, r.stderr[-3000:]
  record = json.loads(r.stdout.strip().splitlines()[-1])
  assert record["eval_mode"] == "resize" and record["size"] == [64, 128]
  assert record["inner_size"] == [32, 32]  # :smoke's eval crop
  assert record["realtime_fps"] > 0 and record["reference_realtime_fps"] > 0
  assert record["reference_realtime"].startswith("official AttaNet")
