"""Real datasets as grain random-access sources, read from the layouts their downloads unpack
to: Cityscapes (files, or TFDS array_record), ADE20K, PASCAL VOC 2012 (+ SBD) and PASCAL
Context. Nothing here downloads anything.

A source returns `{"image": uint8 (H, W, 3) RGB, "label": uint8 (H, W), "name": str}` with
the label already mapped to train ids (0..K-1, and `ignore_label` = config.data.ignore_label,
255 by default, for ignored pixels and unlabeled splits), and carries `num_classes`,
`class_names`, `palette`, `ignore_label` and `export_format` (a key of flaseg.export.FORMATS).

Bad data stops with a message naming the file, never a bare traceback:
* when the source is built (cheap, no decoding): the root and split folders exist, every
  image has a label and every label an image (FileNotFoundError / DatasetError);
* when an example is read: the files decode, image and label have the same size, and the
  label holds only values of the dataset (DatasetError, a ValueError that grain's reader
  threads pass through unchanged and flaseg.main prints as one line).
With `config.data.skip_corrupt=True` every example is read once when the source is built
(in `config.data.num_threads` threads) and those that fail are left out, with one warning
listing them, so a run never meets them later.
"""
import concurrent.futures
import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
from absl import logging
from PIL import Image

from flaseg.data import classes
from flaseg.errors import ConfigError, NotFoundError, UserError


class DatasetError(UserError, ValueError):
  """A dataset file is missing, unreadable or holds unexpected content (names the file)."""


@dataclasses.dataclass(frozen=True)
class Meta:
  """What a source carries besides its examples."""
  title: str                 # for messages, e.g. "Cityscapes"
  class_names: tuple
  palette: np.ndarray        # uint8 (K, 3)
  export_format: str         # a key of flaseg.export.FORMATS


CITYSCAPES = Meta("Cityscapes", classes.CITYSCAPES_CLASSES, classes.CITYSCAPES_PALETTE,
                  "cityscapes")
ADE20K = Meta("ADE20K", classes.ADE20K_CLASSES, classes.ADE20K_PALETTE, "ade20k")
VOC = Meta("PASCAL VOC", classes.VOC_CLASSES, classes.VOC_PALETTE, "voc")
CONTEXT_59 = Meta("PASCAL Context", classes.CONTEXT_CLASSES_59, classes.CONTEXT_PALETTE_59,
                  "pascal_context_59")
CONTEXT_60 = Meta("PASCAL Context", classes.CONTEXT_CLASSES_60, classes.CONTEXT_PALETTE_60,
                  "pascal_context_60")


# Reading and checking one example.


# PIL modes of 16-bit (and 32-bit integer) single-channel images.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path: str) -> np.ndarray:
  """uint8 (H, W, 3) RGB (grey and CMYK JPEGs, e.g. in ADE20K, are converted). A 16-bit grey
  image is scaled to 8 bits (v * 255 / 65535, rounded), never clipped; PIL reads 16-bit RGB
  PNGs as 8-bit already. Float images are refused."""
  try:
    with Image.open(path) as im:
      mode = im.mode
      if mode in _WIDE_MODES:
        wide = np.asarray(im)
      elif mode != "F":
        return np.asarray(im.convert("RGB"))
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ...
    raise DatasetError(f"cannot read image {path}: {type(e).__name__}: {e}") from e
  if mode == "F":
    raise DatasetError(f"image {path} is a floating-point (mode F) image; expected 8- or "
                       f"16-bit RGB or grey")
  if wide.min() < 0 or wide.max() > 65535:
    raise DatasetError(f"image {path} is a mode {mode} image with values {wide.min()}.."
                       f"{wide.max()}; expected 8- or 16-bit RGB or grey")
  grey = np.round(wide.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1)


def read_label(path: str) -> np.ndarray:
  """(H, W) raw label values: the grey level, or the palette index of a 'P' PNG (VOC's
  SegmentationClass), never its colour; uint8, or uint16 for a 16-bit PNG (values kept as
  they are, so that ids above 255 reach `map_label` and its message)."""
  try:
    with Image.open(path) as im:
      mode = im.mode
      label = np.asarray(im) if mode in ("L", "P") + _WIDE_MODES else None
  except Exception as e:
    raise DatasetError(f"cannot read label {path}: {type(e).__name__}: {e}") from e
  if label is None:
    raise DatasetError(f"label {path} is a mode {mode} image; expected a single-channel "
                       f"(grey or palette-indexed) PNG of class ids")
  if label.dtype != np.uint8:
    if label.min() < 0 or label.max() > 65535:
      raise DatasetError(f"label {path} has values {label.min()}..{label.max()}; expected "
                         f"class ids 0..65535")
    label = label.astype(np.uint16)
  return label


def map_label(raw: np.ndarray, lut: np.ndarray, where: str, title: str) -> np.ndarray:
  """Raw label values -> train ids through `lut`; values the dataset never uses are an error."""
  inside = raw < len(lut)
  mapped = np.where(inside, lut[np.where(inside, raw, 0)], -1)
  if (mapped < 0).any():
    bad = np.unique(raw[mapped < 0])
    shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
    raise DatasetError(f"label {where} has values {shown} outside {title}'s "
                       f"{classes.describe(lut)}")
  return mapped.astype(np.uint8)


def check_sizes(image: np.ndarray, label: np.ndarray, image_where: str, label_where: str):
  if image.shape[:2] != label.shape:
    raise DatasetError(f"image {image_where} is {image.shape[1]}x{image.shape[0]} but its "
                       f"label {label_where} is {label.shape[1]}x{label.shape[0]}")


def rescaled_size(height: int, width: int, short: int, long: int):
  """(H, W) scaled, keeping the aspect ratio, so that the short side is `short` unless the long
  side would pass `long` (mmseg's Resize(scale=(long, short), keep_ratio=True))."""
  scale = min(short / min(height, width), long / max(height, width))
  return int(height * scale + 0.5), int(width * scale + 0.5)


def _resize(array: np.ndarray, height: int, width: int, resample) -> np.ndarray:
  return np.asarray(Image.fromarray(array).resize((width, height), resample))


class Source:
  """Shared part of the real sources: indexing, optional eval-time resizing and skipping.

  Subclasses implement `_read(i) -> (image, label, name)` for raw example `i` (raising
  DatasetError for bad data). `resize=(short, long)` rescales image (bilinear) and label
  (nearest) with `rescaled_size` and records the size before in "original_size", which
  flaseg.export uses to write predictions at the original resolution, and the label before in
  "original_label" (config.eval.original_labels scores against it, as mmseg does).
  `ignore_label` is the label of ignored pixels (an int in K..255).
  """

  def __init__(self, meta: Meta, split: str, size: int, resize: Sequence[int] = (0, 0),
               ignore_label: int = classes.IGNORE_LABEL):
    self.meta, self.split = meta, split
    self.class_names = tuple(meta.class_names)
    self.num_classes = len(self.class_names)
    self.ignore_label = classes.check_ignore_label(ignore_label, self.num_classes, meta.title)
    self.palette = np.asarray(meta.palette, np.uint8)
    self.export_format = meta.export_format
    self.resize = tuple(int(s) for s in resize) if resize and min(resize) > 0 else None
    self._ids = np.arange(size)  # raw examples kept (all unless skip_corrupt dropped some)

  def _read(self, i: int):
    raise NotImplementedError

  def __len__(self) -> int:
    return len(self._ids)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    n = len(self._ids)
    if index < 0:
      index += n
    if not 0 <= index < n:
      raise IndexError(f"index {index} out of range for {n} examples")
    image, label, name = self._read(int(self._ids[index]))
    example = {"image": image, "label": label, "name": name}
    if self.resize:
      h, w = label.shape
      new_h, new_w = rescaled_size(h, w, *self.resize)
      if (new_h, new_w) != (h, w):
        example.update(image=_resize(image, new_h, new_w, Image.BILINEAR),
                       label=_resize(label, new_h, new_w, Image.NEAREST), original_size=(h, w),
                       original_label=label)
    return example

  def drop_corrupt(self, num_threads: int = 2) -> list:
    """Reads every example once and leaves out those that fail; returns their errors."""
    def check(i):
      try:
        self._read(int(i))
      except DatasetError as e:
        return str(e)
      return None
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
      errors = list(pool.map(check, self._ids))
    bad = [e for e in errors if e]
    if len(bad) == len(errors):
      raise DatasetError(f"{self.meta.title} {self.split}: every example is unreadable, "
                         f"e.g. {bad[0]}")
    if bad:
      logging.warning("%s %s: skipped %d of %d examples (config.data.skip_corrupt=True): %s",
                      self.meta.title, self.split, len(bad), len(errors), "; ".join(bad[:3])
                      + ("; ..." if len(bad) > 3 else ""))
    self._ids = self._ids[[e is None for e in errors]]
    return bad


class FileSource(Source):
  """(image file, label file) pairs. `labels[i]` is None for an unlabeled test split (label
  all `ignore_label`); `luts[i]` maps the raw values of label i (a map of flaseg.data.classes,
  whose ignored entries become `ignore_label`)."""

  def __init__(self, meta: Meta, split: str, names: Sequence[str], images: Sequence[str],
               labels: Sequence[Optional[str]], luts: Sequence[np.ndarray],
               resize: Sequence[int] = (0, 0), ignore_label: int = classes.IGNORE_LABEL):
    super().__init__(meta, split, len(names), resize, ignore_label)
    self.names, self.images, self.labels = list(names), list(images), list(labels)
    self.luts = [None if lut is None else classes.with_ignore_label(lut, self.ignore_label)
                 for lut in luts]

  def _read(self, i: int):
    image = read_image(self.images[i])
    if self.labels[i] is None:
      return image, np.full(image.shape[:2], self.ignore_label, np.uint8), self.names[i]
    raw = read_label(self.labels[i])
    check_sizes(image, raw, self.images[i], self.labels[i])
    return image, map_label(raw, self.luts[i], self.labels[i], self.meta.title), self.names[i]

  def __repr__(self) -> str:
    return f"FileSource({self.meta.title!r}, split={self.split!r}, {len(self)} examples)"


# Finding the files of a split.


def _dataset_root(cfg, subdirs: Sequence[str], markers: Sequence[str], missing: str) -> str:
  """The first `root/sub` holding every marker folder; else FileNotFoundError(`missing`)."""
  root = os.path.abspath(os.path.expanduser(cfg.root)) if cfg.root else ""
  for sub in subdirs:
    base = os.path.join(root, sub) if sub else root
    if root and all(os.path.isdir(os.path.join(base, m)) for m in markers):
      return base
  raise NotFoundError(missing.format(root=root or "'' (set --config.data.root=DIR)"))


def _first(names, n=3) -> str:
  names = sorted(names)
  return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _files(folder: str, suffix: str, recursive: bool = False) -> dict:
  """{name without suffix: path} of the files in `folder` (and its subfolders) ending with
  `suffix`."""
  found = {}
  for dirpath, dirnames, filenames in os.walk(folder):
    dirnames.sort()
    for f in sorted(filenames):
      if f.endswith(suffix):
        found[f[:-len(suffix)]] = os.path.join(dirpath, f)
    if not recursive:
      break
  return found


def _pair(images: dict, labels: dict, image_dir: str, label_dir: str):
  """Sorted (names, image paths, label paths); an image without label (or the reverse) is an
  error listing the first few."""
  if set(images) - set(labels):
    missing = set(images) - set(labels)
    raise DatasetError(f"{len(missing)} images without labels in {label_dir}: {_first(missing)}")
  if set(labels) - set(images):
    missing = set(labels) - set(images)
    raise DatasetError(f"{len(missing)} labels without images in {image_dir}: "
                       f"{_first(missing)}")
  names = sorted(images)
  return names, [images[n] for n in names], [labels[n] for n in names]


def _listed(base: str, list_file: str, image_dir: str, label_dir: str, split: str):
  """Names from a split list (VOC style) and their `image_dir/<name>.jpg`,
  `label_dir/<name>.png`; a listed name without image or label is an error."""
  with open(list_file) as f:
    names = [line.split()[0] for line in f if line.strip()]
  if not names:
    raise DatasetError(f"split list {list_file} is empty")
  jpgs = set(os.listdir(image_dir))
  missing = [n for n in names if n + ".jpg" not in jpgs]
  if missing:
    raise DatasetError(f"{len(missing)} images listed in {list_file} are missing from "
                       f"{image_dir}: {_first(missing)}")
  images = [os.path.join(image_dir, n + ".jpg") for n in names]
  if not os.path.isdir(label_dir):
    if split == "test":
      return names, images, [None] * len(names)
    raise NotFoundError(f"label folder {label_dir} not found (needed by split {split!r})")
  pngs = set(os.listdir(label_dir))
  missing = [n for n in names if n + ".png" not in pngs]
  if missing:
    raise DatasetError(f"{len(missing)} images listed in {list_file} have no label in "
                       f"{label_dir}: {_first(missing)}")
  return names, images, [os.path.join(label_dir, n + ".png") for n in names]


def _finish(source: Source, cfg) -> Source:
  if cfg.get("skip_corrupt", False):
    source.drop_corrupt(cfg.get("num_threads", 2))
  return source


def _ignore_label(cfg) -> int:
  return cfg.get("ignore_label", classes.IGNORE_LABEL)


def _eval_resize(cfg, split: str):
  """`config.data.eval_resize` = (short, long) for every split but the training one."""
  if split == cfg.train_split:
    return (0, 0)
  return tuple(cfg.get("eval_resize", (0, 0)) or (0, 0))


# The datasets (builders for flaseg.data.DATASETS: (config.data, split, seed) -> source).


CITYSCAPES_MISSING = (
    "Cityscapes not found: config.data.root={root} must hold leftImg8bit/ and gtFine/ "
    "(download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
    "https://www.cityscapes-dataset.com and unzip them there)")


def cityscapes(cfg, split: str, seed: int = 0) -> Source:
  """`root/leftImg8bit/<split>/<city>/*_leftImg8bit.png` with
  `root/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png` where present (cityscapesScripts'
  createTrainIdLabelImgs), else `*_gtFine_labelIds.png` mapped to the 19 train ids."""
  del seed
  root = _dataset_root(cfg, [""], ["leftImg8bit", "gtFine"], CITYSCAPES_MISSING)
  image_dir = os.path.join(root, "leftImg8bit", split)
  label_dir = os.path.join(root, "gtFine", split)
  if not os.path.isdir(image_dir):
    raise NotFoundError(f"Cityscapes split {split!r} not found: no folder {image_dir}")
  images = _files(image_dir, "_leftImg8bit.png", recursive=True)
  if not images:
    raise NotFoundError(f"Cityscapes split {split!r}: no <city>/*_leftImg8bit.png files "
                            f"under {image_dir}")
  if not os.path.isdir(label_dir):
    if split != "test":
      raise NotFoundError(f"Cityscapes labels of split {split!r} not found: no folder "
                              f"{label_dir} (unzip gtFine_trainvaltest.zip in {root})")
    names = sorted(images)
    return _finish(FileSource(CITYSCAPES, split, names, [images[n] for n in names],
                              [None] * len(names), [None] * len(names),
                              _eval_resize(cfg, split), _ignore_label(cfg)), cfg)
  labels = _files(label_dir, "_gtFine_labelIds.png", recursive=True)
  train_ids = _files(label_dir, "_gtFine_labelTrainIds.png", recursive=True)
  labels.update(train_ids)
  names, image_paths, label_paths = _pair(images, labels, image_dir, label_dir)
  luts = [classes.CITYSCAPES_TRAIN_ID_MAP if n in train_ids else classes.CITYSCAPES_ID_MAP
          for n in names]
  source = FileSource(CITYSCAPES, split, names, image_paths, label_paths, luts,
                      _eval_resize(cfg, split), _ignore_label(cfg))
  return _finish(source, cfg)


ADE20K_MISSING = (
    "ADE20K not found: config.data.root={root} must hold ADEChallengeData2016/images/ and "
    "ADEChallengeData2016/annotations/ (download ADEChallengeData2016.zip from "
    "http://sceneparsing.csail.mit.edu and unzip it there)")
ADE20K_FOLDERS = {"train": "training", "val": "validation", "test": "testing"}


def ade20k(cfg, split: str, seed: int = 0) -> Source:
  """`ADEChallengeData2016/images/<training|validation>/*.jpg` with
  `annotations/<...>/*.png` (0 = other -> ignore_label, class k stored as k + 1). Split 'test'
  reads `images/testing/` (copy release_test/testing there) without labels."""
  del seed
  root = _dataset_root(cfg, ["ADEChallengeData2016", ""], ["images", "annotations"],
                       ADE20K_MISSING)
  folder = ADE20K_FOLDERS.get(split, split)
  image_dir = os.path.join(root, "images", folder)
  label_dir = os.path.join(root, "annotations", folder)
  if not os.path.isdir(image_dir):
    raise NotFoundError(f"ADE20K split {split!r} not found: no folder {image_dir}")
  images = _files(image_dir, ".jpg")
  if not images:
    raise NotFoundError(f"ADE20K split {split!r}: no *.jpg files in {image_dir}")
  if not os.path.isdir(label_dir) and split == "test":
    names = sorted(images)
    labels = [None] * len(names)
    image_paths = [images[n] for n in names]
  else:
    if not os.path.isdir(label_dir):
      raise NotFoundError(f"ADE20K labels of split {split!r} not found: no folder "
                              f"{label_dir}")
    names, image_paths, labels = _pair(images, _files(label_dir, ".png"), image_dir, label_dir)
  source = FileSource(ADE20K, split, names, image_paths, labels,
                      [classes.ADE20K_MAP] * len(names), _eval_resize(cfg, split),
                      _ignore_label(cfg))
  return _finish(source, cfg)


VOC_MISSING = (
    "PASCAL VOC not found: config.data.root={root} must hold VOCdevkit/VOC2012/ with "
    "JPEGImages/, SegmentationClass/, SegmentationClassAug/ and "
    "ImageSets/Segmentation/{{train,trainaug,val}}.txt (download VOCtrainval_11-May-2012.tar "
    "from http://host.robots.ox.ac.uk/pascal/VOC/voc2012 and SBD's benchmark.tgz converted to "
    "SegmentationClassAug/ + trainaug.txt, e.g. with mmsegmentation's voc_aug.py)")


def voc(cfg, split: str, seed: int = 0) -> Source:
  """`VOCdevkit/VOC2012`: names from `ImageSets/Segmentation/<split>.txt`, images from
  `JPEGImages/`, labels from `SegmentationClassAug/` for 'trainaug' / 'aug' (SBD) and from
  `SegmentationClass/` (palette PNGs) otherwise; 0-20 with 255 on object borders."""
  del seed
  base = _dataset_root(cfg, ["VOCdevkit/VOC2012", "VOC2012", ""],
                       ["JPEGImages", os.path.join("ImageSets", "Segmentation")], VOC_MISSING)
  list_file = os.path.join(base, "ImageSets", "Segmentation", f"{split}.txt")
  if not os.path.isfile(list_file):
    hint = (" (mmsegmentation's converter writes it as aug.txt: set "
            "--config.data.train_split=aug)" if split == "trainaug" else "")
    raise NotFoundError(f"PASCAL VOC split list {list_file} not found{hint}")
  label_dir = os.path.join(base, "SegmentationClassAug" if split in ("trainaug", "aug")
                           else "SegmentationClass")
  names, images, labels = _listed(base, list_file, os.path.join(base, "JPEGImages"), label_dir,
                                  split)
  source = FileSource(VOC, split, names, images, labels, [classes.VOC_MAP] * len(names),
                      _eval_resize(cfg, split), _ignore_label(cfg))
  return _finish(source, cfg)


CONTEXT_MISSING = (
    "PASCAL Context not found: config.data.root={root} must hold VOCdevkit/VOC2010/ with "
    "JPEGImages/, SegmentationClassContext/ and ImageSets/SegmentationContext/{{train,val}}.txt "
    "(download VOCtrainval_03-May-2010.tar and PASCAL-Context's trainval_merged.json, then run "
    "mmsegmentation's tools/dataset_converters/pascal_context.py)")


def pascal_context(cfg, split: str, seed: int = 0) -> Source:
  """`VOCdevkit/VOC2010`: names from `ImageSets/SegmentationContext/<split>.txt`, labels
  from `SegmentationClassContext/` (0 = background, 1-59 the classes). 59 classes (background
  ignored, the default) or 60 with `config.data.context_60=True`."""
  del seed
  base = _dataset_root(cfg, ["VOCdevkit/VOC2010", "VOC2010", ""],
                       ["JPEGImages", "SegmentationClassContext"], CONTEXT_MISSING)
  list_file = os.path.join(base, "ImageSets", "SegmentationContext", f"{split}.txt")
  if not os.path.isfile(list_file):
    raise NotFoundError(f"PASCAL Context split list {list_file} not found")
  names, images, labels = _listed(base, list_file, os.path.join(base, "JPEGImages"),
                                  os.path.join(base, "SegmentationClassContext"), split)
  sixty = bool(cfg.get("context_60", False))
  meta, lut = (CONTEXT_60, classes.CONTEXT_MAP_60) if sixty else (CONTEXT_59,
                                                                   classes.CONTEXT_MAP_59)
  source = FileSource(meta, split, names, images, labels, [lut] * len(names),
                      _eval_resize(cfg, split), _ignore_label(cfg))
  return _finish(source, cfg)


# Cityscapes through TFDS (array_record, read without TensorFlow).


TFDS_CITYSCAPES = "cityscapes/semantic_segmentation"
TFDS_SPLITS = {"val": "validation"}


class CityscapesTFDS(Source):
  """`tfds.data_source('cityscapes/semantic_segmentation', data_dir=root)` over array_record
  files built once by scripts/prepare_cityscapes_tfds.sh. Reading needs tensorflow-datasets,
  array_record and Pillow, not TensorFlow. TFDS stores raw labelIds: mapped to train ids."""

  def __init__(self, data_dir: str, split: str, resize: Sequence[int] = (0, 0),
               ignore_label: int = classes.IGNORE_LABEL):
    import tensorflow_datasets as tfds  # imported here: slow, and only this source needs it
    self.where = os.path.join(data_dir, TFDS_CITYSCAPES)
    tfds_split = TFDS_SPLITS.get(split, split)
    builder = tfds.builder(TFDS_CITYSCAPES, data_dir=data_dir)
    if tfds_split not in builder.info.splits:
      raise ConfigError(f"config.data split {split!r}: {self.where} has splits "
                       f"{sorted(builder.info.splits)} ('val' reads 'validation')")
    # Undecoded features: images are decoded here, so a bad record is reported like a bad file.
    decoders = {"image_left": tfds.decode.SkipDecoding(),
                "segmentation_label": tfds.decode.SkipDecoding()}
    self._records = builder.as_data_source(split=tfds_split, decoders=decoders)
    super().__init__(CITYSCAPES, split, len(self._records), resize, ignore_label)
    self._lut = classes.with_ignore_label(classes.CITYSCAPES_ID_MAP, self.ignore_label)

  def _read(self, i: int):
    where = f"record {i} of {self.where} split {self.split!r}"
    try:
      record = self._records[i]
    except Exception as e:
      raise DatasetError(f"cannot read {where}: {type(e).__name__}: {e}") from e
    name = record["image_id"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    where = f"{name} ({where})"
    image = _decode(record["image_left"], where, "RGB")
    raw = _decode(record["segmentation_label"], where, None)
    if raw.ndim == 3:
      raw = raw[..., 0]
    check_sizes(image, raw, where, where)
    return image, map_label(raw, self._lut, where, "Cityscapes"), name


def _decode(data, where: str, mode: Optional[str]) -> np.ndarray:
  """Encoded PNG bytes (or an already decoded array) -> numpy."""
  if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim >= 2:
    return data
  import io
  try:
    with Image.open(io.BytesIO(bytes(data))) as im:
      return np.asarray(im.convert(mode) if mode else im)
  except Exception as e:
    raise DatasetError(f"cannot decode {where}: {type(e).__name__}: {e}") from e


TFDS_MISSING = (
    "TFDS Cityscapes not found: config.data.root={root} must be a TFDS data_dir holding "
    "cityscapes/semantic_segmentation/ (build it once with scripts/prepare_cityscapes_tfds.sh "
    "from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip)")


def cityscapes_tfds(cfg, split: str, seed: int = 0) -> Source:
  del seed
  root = os.path.abspath(os.path.expanduser(cfg.root)) if cfg.root else ""
  if not root or not os.path.isdir(os.path.join(root, TFDS_CITYSCAPES)):
    raise NotFoundError(TFDS_MISSING.format(root=root or "''"))
  return _finish(CityscapesTFDS(root, split, _eval_resize(cfg, split), _ignore_label(cfg)),
                 cfg)
