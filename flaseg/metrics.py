"""Confusion matrix (on device, exact integers) and mIoU / pixel accuracy (host, int64)."""
import jax.numpy as jnp
import numpy as np


def confusion_matrix(pred, labels, num_classes: int, ignore_label: int = 255, valid=None):
  """(K, K) int32 counts, rows = ground truth, columns = prediction, over non-ignored pixels.

  `valid` (B,) masks padded examples. Under `jax.jit` on a batch sharded over the mesh the
  result is the sum over the whole global batch. Per batch int32 is exact; accumulate on the
  host in int64 (`Cityscapes val` alone is ~1e9 pixels).
  """
  keep = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
  if valid is not None:
    keep = keep & valid[:, None, None]
  idx = jnp.where(keep, labels * num_classes + pred, num_classes * num_classes)
  counts = jnp.bincount(idx.reshape(-1), length=num_classes * num_classes + 1)[:-1]
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def segmentation_metrics(cm: np.ndarray) -> dict:
  """mIoU (mean over classes present in the ground truth or the prediction), per-class IoU
  (NaN for absent classes) and pixel accuracy from an int64 confusion matrix."""
  cm = np.asarray(cm, np.int64)
  tp = np.diag(cm).astype(np.float64)
  union = cm.sum(0) + cm.sum(1) - np.diag(cm)
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, tp / union, np.nan)
  total = cm.sum()
  return {"miou": float(np.nanmean(iou)) if np.any(union > 0) else 0.0,
          "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
          "pixel_acc": float(tp.sum() / total) if total else 0.0}
