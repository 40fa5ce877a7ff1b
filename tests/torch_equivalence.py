"""Shared pieces of the PyTorch equivalence tests: importing torch (skipping without it),
randomising a reference network (weights AND BN statistics, so that a wrong mean/var/scale
mapping shows), its state dict as numpy, and the relative difference the tests bound."""
import numpy as np
import pytest

from reference.torch.imports import declare_torchvision_ops


def import_torch():
  """torch with 2 threads (the test machine's cores), or skip the test."""
  torch = pytest.importorskip("torch")
  torch.set_num_threads(2)
  return torch


def import_torchvision():
  """(torch, torchvision), or skip; declares the operators torchvision's wheel lacks."""
  torch = import_torch()
  declare_torchvision_ops(torch)
  return torch, pytest.importorskip("torchvision")


def randomise(torch, module, seed=0):
  """Random weights and BN statistics of a torch module, in eval mode."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in module.state_dict().items():
      if not t.is_floating_point():
        continue
      if "gamma" in name:  # attention residual scales (torch zeros at init)
        t.copy_(torch.randn(t.shape, generator=g) * 0.1 + 0.5)
      elif name.endswith("running_var"):
        t.copy_(torch.rand(t.shape, generator=g) + 0.5)
      elif name.endswith("running_mean") or name.endswith("bias"):
        t.copy_(torch.randn(t.shape, generator=g) * 0.1)
      elif t.ndim == 1:  # BN weight
        t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
      else:
        t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
  module.eval()  # some modules' train() returns None (mmseg's HRNet)
  return module


def state_dict(module) -> dict:
  return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def rel_diff(got, want) -> float:
  """max |got - want| / max |want|."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
