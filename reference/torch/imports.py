"""Importing torch (lazily: the modules here import without it) and torchvision's operators."""
import sys


def import_torch():
  import torch
  return torch


def declare_torchvision_ops(torch):
  """torchvision's PyPI build lacks kernels for this torch (`operator torchvision::nms does
  not exist` on import): declare the two operators it registers fake kernels for."""
  if "torchvision" in sys.modules:
    return
  try:
    torch.ops.torchvision.nms
  except (AttributeError, RuntimeError):
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    declare_torchvision_ops.lib = lib  # keep the definitions alive
