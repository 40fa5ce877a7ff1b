"""TensorBoard event files beside metrics.jsonl (`config.train.tensorboard`, default on).

`TensorBoardLog` is a `MetricsLog` that also writes every record to workdir/tensorboard/:
each numeric field of a training record as the scalar `train/<field>` (loss, loss terms, lr,
img_per_s), each evaluation record as `<split>/miou`, `<split>/pixel_acc` and
`<split>/iou/<class name>`; `prediction_sink` gives the evaluator a sink that adds the first
validation predictions (image | ground truth | prediction) as images. Written by tensorboardX
(`pip install "flaseg[tensorboard]"`), no TensorFlow; without it, `metrics_log` warns once and
returns a plain `MetricsLog`, so flaseg runs the same without it.
"""
import os

import numpy as np
from absl import logging

from flaseg import export
from flaseg.reporting import MetricsLog, is_main

FOLDER = "tensorboard"


def metrics_log(config, workdir: str, class_names=()) -> MetricsLog:
  """A `TensorBoardLog` when config.train.tensorboard is on, tensorboardX importable and
  this is process 0; else a plain `MetricsLog`."""
  if not config.train.get("tensorboard", False) or not is_main():
    return MetricsLog(workdir)
  try:
    import tensorboardX  # noqa: F401  (an optional extra)
  except ImportError:
    logging.warning("config.train.tensorboard=True but tensorboardX is not installed "
                    "(pip install tensorboardX): writing metrics.jsonl only")
    return MetricsLog(workdir)
  return TensorBoardLog(workdir, class_names)


class TensorBoardLog(MetricsLog):
  """metrics.jsonl and workdir/tensorboard/ event files (process 0 only)."""

  def __init__(self, workdir: str, class_names=()):
    super().__init__(workdir)
    import tensorboardX
    self.dir = os.path.join(workdir, FOLDER)
    self.writer = tensorboardX.SummaryWriter(self.dir)
    self.class_names = tuple(class_names)

  def write(self, record: dict) -> None:
    super().write(record)
    step = int(record["step"])
    if "split" in record:  # an evaluation
      split = record["split"]
      for key in ("miou", "pixel_acc"):
        self.writer.add_scalar(f"{split}/{key}", float(record[key]), step)
      for k, iou in enumerate(record.get("per_class_iou", ())):
        name = self.class_names[k] if k < len(self.class_names) else str(k)
        if iou is not None and np.isfinite(iou):
          self.writer.add_scalar(f"{split}/iou/{name}", float(iou), step)
    else:
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and np.isfinite(value):
          self.writer.add_scalar(f"train/{key}", float(value), step)
    self.writer.flush()

  def prediction_sink(self, step: int, count: int, palette, tag: str = "predictions"):
    return PredictionSummaries(self, step, count, palette, tag)

  def close(self) -> None:
    self.writer.close()


class PredictionSummaries:
  """An evaluator sink: image | ground truth | prediction of the first `count` valid
  examples, as TensorBoard images `<tag>/<i>` at `step`."""

  def __init__(self, log: TensorBoardLog, step: int, count: int, palette, tag: str):
    self.log, self.step, self.count, self.palette, self.tag = log, step, count, palette, tag
    self.saved = 0

  def write_batch(self, local, pred):
    panels = []
    for j in range(len(local["image"])):
      if self.saved + len(panels) >= self.count:
        break
      if local["valid"][j]:
        panels.append(np.concatenate([np.asarray(local["image"][j], np.uint8),
                                      export.colorize(local["label"][j], self.palette),
                                      export.colorize(pred[j], self.palette)], axis=1))
    for panel in panels:
      self.log.writer.add_image(f"{self.tag}/{self.saved}", panel, self.step,
                                dataformats="HWC")
      self.saved += 1
    if panels:
      self.log.writer.flush()
