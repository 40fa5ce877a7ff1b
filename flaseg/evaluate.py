"""Evaluation as a plug-in (as big_vision's evaluators): `Evaluator(predict_fn, source, mesh,
...).run(variables) -> metrics`.

`predict_fn(variables, images, out_size) -> (B, *out_size) int32 class ids` is any jittable
function (`make_predict_fn` builds the config's: whole / slide, multi-scale, flip). The
evaluator runs it over the whole mesh on padded batches of `source`, sums an exact confusion
matrix over all devices and hosts, and returns mIoU, per-class IoU and pixel accuracy. What
else happens to the predictions (coloured PNGs, the benchmark's submission format) is up to
the `sinks` given to `run`; logging the metrics is up to the caller.
"""
import os
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from flaseg import export, inference, metrics, parallel
from flaseg.data import pipeline
from flaseg.reporting import Progress, is_main


class FirstExamples:
  """The first `n` examples of a source (`config.eval.num_images`); its other attributes
  (palette, export_format, ...) are the source's."""

  def __init__(self, source, n):
    self.source, self.n = source, min(n, len(source))

  def __getattr__(self, name):
    if name == "source":  # not set yet (e.g. while unpickling)
      raise AttributeError(name)
    return getattr(self.source, name)

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if i >= self.n:
      raise IndexError(i)
    return self.source[i]


def make_probs_fn(model, eval_cfg, align_corners: bool) -> Callable:
  """`probs(variables, images, out_size)`: the mean softmax (B, *out_size, K) of `model`'s
  'out' over `eval_cfg`'s scales and flip, whole image, sliding windows or resized."""
  inference.check_mode(eval_cfg.mode)

  def probs(variables, images, out_size):
    def logits_fn(x):
      return model.apply(variables, x, train=False)["out"]
    return inference.predict_probs(
        logits_fn, images, mode=eval_cfg.mode, scales=tuple(eval_cfg.scales),
        flip=eval_cfg.flip, crop_size=tuple(eval_cfg.crop_size), stride=tuple(eval_cfg.stride),
        out_size=out_size, align_corners=align_corners)
  return probs


def make_predict_fn(model, eval_cfg, align_corners: bool) -> Callable:
  """`predict(variables, images, out_size)`: the argmax of `make_probs_fn`'s probabilities
  (the config's evaluation), int32 class ids at `out_size`."""
  probs_fn = make_probs_fn(model, eval_cfg, align_corners)

  def predict(variables, images, out_size, sizes=None, out_sizes=None):
    """With `sizes` / `out_sizes` (B, 2): the probabilities at the images' size, each row's
    `sizes[b]` region resized to `out_sizes[b]` (config.eval.original_labels, mmseg's test)."""
    if sizes is None:
      return jnp.argmax(probs_fn(variables, images, out_size), -1).astype(jnp.int32)
    probs = probs_fn(variables, images, images.shape[1:3])
    probs = inference.resize_rows(probs, sizes, out_size, out_sizes, align_corners)
    return jnp.argmax(probs, -1).astype(jnp.int32)
  return predict


class Evaluator:
  """`run(variables, sinks) -> {'miou', 'per_class_iou', 'pixel_acc'}` of `predict_fn` on
  `source`.

  batch_size: global eval batch (0: one image per device); pad_to: (H, W) every batch is
  padded to, so that the step compiles once (None / (0, 0): each batch's largest image).
  original_labels: score against the labels before `config.data.eval_resize` (each
  prediction resized back to its image's original size, as mmseg does); `predict_fn` then
  takes the images' and labels' sizes (`make_predict_fn`'s `sizes`, `out_sizes`).
  """

  def __init__(self, predict_fn: Callable, source, mesh, *, num_classes: int,
               batch_size: int = 0, ignore_label: int = 255,
               pad_to: Optional[Sequence[int]] = None, name: str = "eval",
               original_labels: bool = False):
    self.source, self.mesh, self.num_classes, self.name = source, mesh, num_classes, name
    self.batch_size = int(batch_size) or mesh.devices.size
    parallel.check_batch_size(self.batch_size, mesh, "config.eval.batch_size")
    self.ignore_label, self.pad_to = ignore_label, pad_to
    self.original_labels = bool(original_labels)

    def step(variables, images, labels, valid, sizes=None, label_sizes=None):
      if self.original_labels:
        pred = predict_fn(variables, images, labels.shape[1:3], sizes, label_sizes)
      else:
        pred = predict_fn(variables, images, labels.shape[1:3])
      return metrics.confusion_matrix(pred, labels, num_classes, ignore_label, valid), pred
    self.step = jax.jit(step, out_shardings=(parallel.replicated(mesh),
                                             parallel.data_sharded(mesh)))

  def run(self, variables, sinks=()) -> dict:
    """Metrics of `variables`; `sinks` are objects with `write_batch(local_batch,
    local_pred)`, called on every process with its own rows (e.g. `export.Exporter`,
    `PredictionImages`)."""
    cm = np.zeros((self.num_classes, self.num_classes), np.int64)
    procs, index = jax.process_count(), jax.process_index()
    n_batches = pipeline.num_eval_batches(len(self.source), self.batch_size, procs)
    progress = Progress(n_batches, 0, self.name)
    batches = pipeline.eval_batches(self.source, batch_size=self.batch_size // procs,
                                    process_index=index, process_count=procs,
                                    pad_to=self.pad_to, ignore_label=self.ignore_label,
                                    original_labels=self.original_labels)
    keys = ("image", "label", "valid") + (("size", "label_size") if self.original_labels else ())
    for i, local in enumerate(batches):
      batch = parallel.global_batch({k: local[k] for k in keys}, self.mesh)
      batch_cm, pred = self.step(variables, *(batch[k] for k in keys))
      cm += np.asarray(jax.device_get(batch_cm), np.int64)
      if sinks:
        local_pred = parallel.local_array(pred)
        if self.original_labels:  # Sinks get the predictions at the evaluated size.
          local, local_pred = _at_image_size(local, local_pred)
        for sink in sinks:
          sink.write_batch(local, local_pred)
      if (i + 1) % max(n_batches // 4, 1) == 0 or i + 1 == n_batches:
        progress.update(i + 1, self.batch_size)
    return metrics.segmentation_metrics(cm)


def _at_image_size(local: dict, pred: np.ndarray):
  """An original_labels batch as the sinks take it: the labels and the predictions (nearest)
  at the resized images' size."""
  out = np.zeros(local["image"].shape[:3], pred.dtype)
  for j, ((h, w), (oh, ow)) in enumerate(zip(local["size"], local["label_size"])):
    row = Image.fromarray(np.ascontiguousarray(pred[j, :oh, :ow], np.int32))
    out[j, :h, :w] = np.asarray(row.resize((int(w), int(h)), Image.NEAREST))
  return {**local, "label": local["resized_label"]}, out


class PredictionImages:
  """A sink writing image | ground truth | prediction PNGs of the first `count` valid
  examples to `folder` (process 0 only)."""

  def __init__(self, folder: str, count: int, palette):
    self.folder, self.count, self.palette, self.saved = folder, count, palette, 0

  def write_batch(self, local, pred):
    for j in range(len(local["image"])):
      if self.saved >= self.count or not is_main():
        return
      if local["valid"][j]:
        path = os.path.join(self.folder, f"{int(local['index'][j]):06d}.png")
        export.save_comparison_png(path, local["image"][j], local["label"][j], pred[j],
                                   self.palette)
        self.saved += 1
