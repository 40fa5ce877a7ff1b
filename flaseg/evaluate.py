"""Evaluation over the whole mesh: predictions (whole / slide, multi-scale, flip), an exact
confusion matrix summed over all devices and hosts, mIoU, a few coloured PNGs, and (with
config.eval.export_dir) every prediction in the benchmark's submission format."""
import os

import jax
import jax.numpy as jnp
import numpy as np

from flaseg import export, inference, metrics, parallel, writer
from flaseg.data import pipeline


class _Head:
  """The first `n` examples of a source."""

  def __init__(self, source, n):
    self.source, self.n = source, min(n, len(source))

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if i >= self.n:
      raise IndexError(i)
    return self.source[i]


def make_eval_step(model, eval_cfg, num_classes, ignore_label, align_corners):
  """(variables, images, labels, valid) -> (confusion matrix, predictions)."""
  def eval_step(variables, images, labels, valid):
    def logits_fn(x):
      return model.apply(variables, x, train=False)["out"]
    probs = inference.predict_probs(
        logits_fn, images, mode=eval_cfg.mode, scales=tuple(eval_cfg.scales),
        flip=eval_cfg.flip, crop_size=tuple(eval_cfg.crop_size), stride=tuple(eval_cfg.stride),
        out_size=labels.shape[1:3], align_corners=align_corners)
    pred = jnp.argmax(probs, -1).astype(jnp.int32)
    cm = metrics.confusion_matrix(pred, labels, num_classes, ignore_label, valid)
    return cm, pred
  return eval_step


class Evaluator:
  """`run(state, step, log)` evaluates `state` on `source` and logs one metrics record."""

  def __init__(self, model, config, mesh, source, workdir):
    self.config, self.mesh, self.workdir = config, mesh, workdir
    n = int(config.eval.num_images)
    self.source = _Head(source, n) if n else source
    self.palette = source.palette
    self.num_classes = config.model.num_classes
    self.batch_size = int(config.eval.batch_size) or mesh.devices.size
    parallel.check_batch_size(self.batch_size, mesh, "config.eval.batch_size")
    step_fn = make_eval_step(model, config.eval, self.num_classes, config.data.ignore_label,
                             config.model.align_corners)
    self.eval_step = jax.jit(step_fn, out_shardings=(parallel.replicated(mesh),
                                                     parallel.data_sharded(mesh)))
    # Each process exports its own rows of every batch.
    self.exporter = (export.Exporter(source, config.eval.export_dir)
                     if config.eval.export_dir else None)

  def run(self, state, step: int, log) -> dict:
    variables = {"params": state.params, **state.model_state}
    cm = np.zeros((self.num_classes, self.num_classes), np.int64)
    n_batches = pipeline.num_eval_batches(len(self.source), self.batch_size,
                                          jax.process_count())
    progress = writer.Progress(n_batches, 0, "eval")
    saved = 0
    if self.exporter:
      self.exporter.count = 0
    for i, local in enumerate(pipeline.eval_batches(
        self.source, batch_size=self.batch_size // jax.process_count(),
        process_index=jax.process_index(), process_count=jax.process_count())):
      batch = parallel.global_batch(
          {k: local[k] for k in ("image", "label", "valid")}, self.mesh)
      batch_cm, pred = self.eval_step(variables, batch["image"], batch["label"], batch["valid"])
      cm += np.asarray(jax.device_get(batch_cm), np.int64)
      save = writer.is_main() and saved < self.config.eval.save_images
      local_pred = parallel.local_array(pred) if save or self.exporter else None
      if save:
        saved = self._save_images(local, local_pred, step, saved)
      if self.exporter:
        self.exporter.write_batch(local, local_pred)
      if (i + 1) % max(n_batches // 4, 1) == 0 or i + 1 == n_batches:
        progress.update(i + 1, self.batch_size)
    result = metrics.segmentation_metrics(cm)
    log.write({"step": int(step), **result})
    if self.exporter:
      writer.info(f"[eval] exported {self.exporter.count} predictions (this process) to "
                  f"{self.exporter.dir}")
    writer.info(f"[eval] step {step}: mIoU {result['miou']:.4f} "
                f"pixel acc {result['pixel_acc']:.4f}")
    return result

  def _save_images(self, local, pred, step, saved):
    for j in range(len(local["image"])):
      if saved >= self.config.eval.save_images or not local["valid"][j]:
        break
      index = int(local["index"][j])
      path = os.path.join(self.workdir, "predictions", f"step_{step}", f"{index:06d}.png")
      writer.save_prediction_png(path, local["image"][j], local["label"][j], pred[j],
                                 self.palette)
      saved += 1
    return saved
