"""Train and eval input pipelines over a grain random-access source.

`train_dataset` is an infinite, shuffled, augmented and batched `grain.IterDataset`. It is
built from a `grain.MapDataset`, so element k of the stream is a pure function of (seed, k):
the stream is deterministic, and its iterator's `get_state()` / `set_state()` (a single
index) restores it exactly, e.g. from an orbax checkpoint.

`eval_batches` is a plain generator over one split, padded so that every process yields
the same number of batches (needed to run a jitted step on every host), all of one shape
with `pad_to` (needed across hosts when image sizes vary; one compile).
"""
import math
from typing import Iterator, Optional, Sequence

import grain
import numpy as np

from flaseg.data import transforms
from flaseg.errors import ConfigError


# config.data.photometric: the colour augmentation of training crops.
PHOTOMETRIC = ("jitter", "mmseg")


def _train_example(element: dict) -> dict:
  """Keeps the arrays a train step needs: uint8 image and int32 label."""
  return {"image": element["image"], "label": element["label"].astype(np.int32)}


def train_dataset(source, *, batch_size: int, crop_size: Sequence[int],
                  scale_range: Sequence[float] = (0.5, 2.0), flip: bool = True,
                  color_jitter: float = 0.25, seed: int = 0, process_index: int = 0,
                  process_count: int = 1, num_threads: int = 2,
                  ignore_label: int = 255, photometric: str = "jitter",
                  cat_max_ratio: float = 1.0, upsize_crop: bool = False,
                  rotate90: float = 0.0) -> grain.IterDataset:
  """Infinite stream of augmented train batches for this process.

  Yields `{"image": uint8 (batch_size, h, w, 3), "label": int32 (batch_size, h, w)}` with
  (h, w) = `crop_size` and `batch_size` the per-process batch. Every epoch is shuffled
  afresh. All processes build the same global stream (shuffle, then augmentation keyed on
  the global position) cut into local batches, and process p takes local batches p,
  p + process_count, ...: the rows of global batch t are the same examples in the same order
  whatever the number of processes (so are the per-row dropout masks), and processes see
  disjoint examples within an epoch. Crops reaching past a (scaled) image are padded with
  image 0 and label `ignore_label`.

  `photometric` is "jitter" (`transforms.ColorJitter` of strength `color_jitter`, 0 for none)
  or "mmseg" (mmseg's `PhotoMetricDistortion` of the unpadded crop, as mmseg pads after it;
  `color_jitter` unused); `cat_max_ratio`, `upsize_crop` and `rotate90` are
  `transforms.RandomScaleCropFlip`'s options (mmseg's and AttaNet's crops).
  """
  if photometric not in PHOTOMETRIC:
    raise ConfigError(f"config.data.photometric={photometric!r}: expected one of "
                      f"{', '.join(map(repr, PHOTOMETRIC))}")
  mmseg = photometric == "mmseg"
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  ds = ds.random_map(transforms.RandomScaleCropFlip(
      crop_size, scale_range, flip, ignore_label, cat_max_ratio=cat_max_ratio,
      upsize_crop=upsize_crop, rotate90=rotate90, pad=not mmseg), seed=seed + 1)
  if mmseg:
    ds = ds.random_map(transforms.PhotoMetricDistortion(), seed=seed + 2)
    ds = ds.map(transforms.PadCrop(crop_size, ignore_label))
  elif color_jitter:
    ds = ds.random_map(transforms.ColorJitter(color_jitter, color_jitter, color_jitter),
                       seed=seed + 2)
  ds = ds.map(_train_example).batch(batch_size, drop_remainder=True)
  ds = ds[process_index::process_count]
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                              prefetch_buffer_size=max(2, num_threads)))


def num_eval_batches(num_examples: int, batch_size: int, process_count: int = 1) -> int:
  """Batches that every process yields in `eval_batches`."""
  return math.ceil(math.ceil(num_examples / process_count) / batch_size)


def _fixed_shape(pad_to):
  """`pad_to` as (H, W), or None for per-batch padding (None or (0, 0))."""
  if pad_to is None or tuple(pad_to) == (0, 0):
    return None
  if len(pad_to) != 2 or min(int(s) for s in pad_to) <= 0:
    raise ConfigError(f"pad_to={tuple(pad_to)}: expected (H, W) > 0, or (0, 0) to pad each "
                     f"batch to its largest image")
  return int(pad_to[0]), int(pad_to[1])


def eval_batches(source, *, batch_size: int, process_index: int = 0, process_count: int = 1,
                 pad_to: Optional[Sequence[int]] = None,
                 ignore_label: int = 255, original_labels: bool = False) -> Iterator[dict]:
  """Yields this process's eval batches, in order, without augmentation.

  Process p reads examples p, p + process_count, ...; every process yields
  `num_eval_batches(len(source), batch_size, process_count)` batches
  `{"image": uint8 (B, H, W, 3), "label": int32 (B, H, W), "valid": bool (B,),
  "index": int32 (B,)}`. Images are padded on the bottom and right with image 0 and label
  `ignore_label`: to `pad_to` = (H, W) (config.eval.pad_to), the same shape for every batch and
  process, so that the eval step compiles once (an image larger than `pad_to` is a
  ValueError); with `pad_to` None or (0, 0) to the largest H and W of each batch. The last
  batches are filled with blank examples, `valid=False` and `index=-1`.

  `original_labels`: "label" holds the examples' "original_label" (the label before
  config.data.eval_resize; the label itself where there is none), padded like the images, and
  the batch adds "resized_label" (the labels at the images' size), "size" and "label_size"
  (B, 2) int32: each image's and original label's (H, W).
  """
  fixed = _fixed_shape(pad_to)
  indices = list(range(process_index, len(source), process_count))
  num_batches = num_eval_batches(len(source), batch_size, process_count)
  for b in range(num_batches):
    batch_indices = indices[b * batch_size:(b + 1) * batch_size]
    examples = [source[i] for i in batch_indices]
    if fixed:
      h, w = fixed
      for i, ex in zip(batch_indices, examples):
        eh, ew = ex["label"].shape
        if eh > h or ew > w:
          which = f"{i} ({ex['name']})" if "name" in ex else f"{i}"
          raise ConfigError(f"eval image {which} is {eh}x{ew} (HxW), larger than "
                           f"pad_to=({h}, {w}) (config.eval.pad_to)")
    else:
      heights = [ex["label"].shape[0] for ex in examples] + [1]
      widths = [ex["label"].shape[1] for ex in examples] + [1]
      if not examples and len(source):
        # A process with no real example left: blank images of the first example's size.
        first = source[0]["label"].shape
        heights.append(first[0])
        widths.append(first[1])
      h, w = max(heights), max(widths)
    images = np.zeros((batch_size, h, w, 3), np.uint8)
    labels = np.full((batch_size, h, w), ignore_label, np.int32)
    for k, ex in enumerate(examples):
      eh, ew = ex["label"].shape
      images[k, :eh, :ew] = ex["image"]
      labels[k, :eh, :ew] = ex["label"]
    valid = np.arange(batch_size) < len(examples)
    index = np.full((batch_size,), -1, np.int32)
    index[:len(examples)] = batch_indices
    batch = {"image": images, "label": labels, "valid": valid, "index": index}
    if original_labels:
      batch.update(_original_labels(examples, batch_size, fixed, ignore_label), resized_label=labels,
                   size=np.array([ex["label"].shape for ex in examples] +
                                 [(1, 1)] * (batch_size - len(examples)), np.int32).reshape(-1, 2))
    yield batch


def _original_labels(examples: list, batch_size: int, fixed, ignore_label: int) -> dict:
  """"label" and "label_size" of an original_labels batch (see `eval_batches`)."""
  originals = [ex.get("original_label", ex["label"]) for ex in examples]
  if fixed:
    h, w = fixed
    for ex, lab in zip(examples, originals):
      if lab.shape[0] > h or lab.shape[1] > w:
        raise ConfigError(f"eval label {ex.get('name', '')} is {lab.shape[0]}x{lab.shape[1]} "
                          f"(HxW) before eval_resize, larger than pad_to=({h}, {w}) "
                          f"(config.eval.pad_to)")
  else:
    h = max([lab.shape[0] for lab in originals] + [1])
    w = max([lab.shape[1] for lab in originals] + [1])
  labels = np.full((batch_size, h, w), ignore_label, np.int32)
  for k, lab in enumerate(originals):
    labels[k, :lab.shape[0], :lab.shape[1]] = lab
  sizes = [lab.shape for lab in originals] + [(1, 1)] * (batch_size - len(originals))
  return {"label": labels, "label_size": np.array(sizes, np.int32).reshape(-1, 2)}
