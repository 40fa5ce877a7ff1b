"""The empirical study's protocol (configs/study.py) and its table (scripts/study.py)."""
import importlib.util
import os
import subprocess
import sys

import pytest

from flaseg import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(REPO, "configs", "study.py")
PER_HEAD = ("model.head", "model.head_kwargs", "loss.weights")  # the only keys that may differ


def _script(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and f"{prefix}{k}" not in PER_HEAD:
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


@pytest.mark.parametrize("dataset,crop,stride", [("cityscapes", 769, 513), ("ade20k", 520, 346)])
def test_one_backbone_and_one_setup_for_the_eight_networks(dataset, crop, stride):
  """Every study network's config equals every other one's outside the head (module, widths,
  the weights of its own outputs), and holds the study's figures."""
  networks = config_lib.load_module(STUDY).NETWORKS
  assert len(networks) == 9  # the eight, DNLNet in both readings
  configs = {h: config_lib.load(f"{STUDY}:head={h},dataset={dataset}") for h in networks}
  flat = {h: _flat(c.to_dict()) for h, c in configs.items()}
  first = flat[networks[0]]
  for h, f in flat.items():
    differing = sorted(k for k in set(f) | set(first)
                       if k not in PER_HEAD and f.get(k) != first.get(k))
    assert not differing, (h, differing)
  for h, c in configs.items():
    assert (c.model.backbone.depth, c.model.backbone.stem, c.model.backbone.output_stride,
            c.model.backbone.multi_grid) == (101, "v1c", 8, None)
    assert (c.train.steps, c.train.batch_size, c.optim.lr, c.loss.ohem) == (80000, 8, 1e-2,
                                                                            "none")
    assert tuple(c.data.crop_size) == (crop, crop) and tuple(c.eval.stride) == (stride, stride)
    assert c.loss.weights["out"] == 1.0
    assert all(w == 0.4 for k, w in c.loss.weights.items() if k != "out"), h
  assert configs["reconet"].model.head_kwargs.profile_size == -(-crop // 8)


def test_study_gflops_count_as_the_study_with_mmseg_hooks():
  """scripts/study.py's GFLOPs against the study's formula applied by forward hooks to every
  Conv2d of mmseg's peer of the network (2 H W (Cin K^2 + 1) Cout, Cin per group), at H != W."""
  from reference.torch import mmseg_peers
  torch = mmseg_peers.import_torch()
  study = _script("study")
  size = (64, 96)
  config = config_lib.load(f"{STUDY}:head=nl,smoke")
  config.model.num_classes = 19
  net = mmseg_peers.mmseg_segmentor(config).eval()
  flops = []

  def hook(module, inputs, output):
    k = module.weight[0].numel()  # Cin / groups x Kh x Kw
    flops.append(2 * output.shape[2] * output.shape[3] * (k + 1) * module.out_channels)

  for module in net.modules():
    if isinstance(module, torch.nn.Conv2d):
      module.register_forward_hook(hook)
  with torch.no_grad():
    mmseg_peers.mmseg_outputs(net, torch.zeros(1, 3, *size), train=True)  # with the aux head
  assert study.study_gflops(config, size) * 1e9 == pytest.approx(sum(flops), rel=1e-12)
  assert sum(flops) > 0


def test_study_script_prints_the_table(tmp_path):
  """`python scripts/study.py` prints the markdown table (counts only here: its timing is
  scripts/benchmark.py's `time_steps`, tested in test_benchmark.py, and its smoke runs are
  `train_and_evaluate`; the full run is in the README)."""
  out = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "study.py"), "--networks=nl,fla",
       "--flops-size=64x96", "--variant=smoke", "--timing=false", "--smoke=false"],
      capture_output=True, text=True, cwd=tmp_path, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = out.stdout.strip().splitlines()
  assert lines[1] == "| network | params_m | gflops |"
  rows = {line.split("|")[1].strip(): line for line in lines[3:]}
  assert sorted(rows) == ["fla", "nl"]
  bad = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "study.py"),
                        "--networks=nl,nope"], capture_output=True, text=True, cwd=tmp_path)
  assert bad.returncode != 0 and "nope" in bad.stderr.strip().splitlines()[-1]
