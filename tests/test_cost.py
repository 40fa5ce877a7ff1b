"""scripts/cost.py: FLOPs of the attention blocks as FLANet's Table 3 counts them.

FLOPs come from lowering only (no compile, nothing run), so the paper-size checks are cheap.
"""
import importlib.util
import json
import os
import subprocess
import sys

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


@pytest.mark.parametrize("name", ["fla", "channel_nl", "spatial_nl", "danet", "cs_nl", "emanet",
                                  "ccnet"])
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


def test_every_block_lowers():
  """Every block builds and lowers at a tiny map (odd size: padding paths of ISA / AFM)."""
  for name in cost.BLOCKS:
    assert block_gflops(name, 9, 11, 32) > 0, name


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
