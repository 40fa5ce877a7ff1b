"""scripts/cost.py: FLOPs of the attention blocks as FLANet's Table 3 counts them.

FLOPs come from lowering only (no compile, nothing run), so the paper-size checks are cheap.
"""
import importlib.util
import json
import os
import subprocess
import sys

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_cost():
  spec = importlib.util.spec_from_file_location("cost", os.path.join(REPO, "scripts", "cost.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


cost = _load_cost()


def block_gflops(name, h, w, c):
  return cost.gflops(*cost.block_program(name, 1, h, w, c))


def test_fla_core_flops_match_analytic():
  """FLA core: 4 N C^2 multiply-adds (two C x C energies and two aggregations per column /
  row) = 8 N C^2 FLOPs; the Linear encoders and the softmax add a few %."""
  h = w = 64
  c = 64
  analytic = 4 * h * w * c * c * 2 / 1e9
  got = block_gflops("fla", h, w, c)
  assert analytic <= got < 1.05 * analytic


@pytest.mark.parametrize("name", ["fla", "channel_nl", "spatial_nl", "dual_nl", "cs_nl", "ema",
                                  "rcca"])
def test_flanet_table3_reproduced(name):
  """At FLANet's setting (768x768 input, 96x96x512 map) every block with a figure in its
  Table 3 is within 2% of it."""
  paper = cost.FLANET[name][0]
  assert abs(block_gflops(name, 96, 96, 512) / paper - 1) < 0.02


@pytest.mark.parametrize("name", ["sam", "afm", "spatial_nl"])
def test_attanet_table3_reproduced(name):
  """AttaNet's Table 3 (1024x1024, 64x64x128 map) counts multiply-adds (= FLOPs / 2)."""
  paper = cost.ATTANET[name][0]
  assert abs(block_gflops(name, 64, 64, 128) / 2 / paper - 1) < 0.02


@pytest.mark.parametrize("name", sorted(cost.BLOCKS))
def test_every_block_maps_its_feature_map(name):
  """Every block returns a map of its input's shape at an odd-sized map (the padding paths of
  ISA / AFM), and its FLOPs grow with the map: 4x the positions (at multiples of ISA's 8x8
  blocks) cost at least 3.5x (the per-position convs; the spatial attentions grow faster)."""
  fn, args = cost.block_program(name, 1, 9, 11, 32)
  out = jax.eval_shape(fn, *args)
  # RecoNet returns cat[x, ReLU(x * T)]; SANet's SA module reduces to C / 4.
  channels = {"reconet": 64, "sa": 8}.get(name, 32)
  assert out.shape == (1, 9, 11, channels) and out.dtype == args[1].dtype
  # RecoNet's rank-64 C x C factor maps come from pooled features: only its reconstruction
  # grows with the map.
  growth = 1.2 if name == "reconet" else 3.5
  assert block_gflops(name, 32, 48, 32) >= growth * block_gflops(name, 16, 24, 32)


@pytest.mark.slow
def test_json_output_parses():
  """`--json`: a list of objects with block, gflops, memory_mb (blocks and a whole network)."""
  cmd = [sys.executable, os.path.join(REPO, "scripts", "cost.py"), "--json", "--table=none",
         "--size=64x64", "--channels=32", "--blocks=fla,nl", "--nets=fcn",
         "--backbone=resnet18"]
  out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
  records = json.loads(out.stdout)
  assert [r["block"] for r in records] == ["fla", "nl", "net:fcn"]
  for r in records:
    for key in ("block", "gflops", "memory_mb", "paper_gflops", "ratio"):
      assert key in r
    assert r["gflops"] > 0 and r["memory_mb"] > 0
  assert records[0]["feature"] == [1, 8, 8, 32]
  assert records[0]["train_memory_mb"] > records[0]["memory_mb"]
