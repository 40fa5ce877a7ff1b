"""A dataset of your own: a folder of images and masks (`config.data.name='folder'`).

  root/classes.json           {"classes": ["road", ...],              required
                               "colors": [[128, 64, 128], ...],        optional: palette, and
                                                                       the colours of RGB masks
                               "label_map": {"7": 0, "8": 1, ...},     optional: raw value -> class
                               "ignore": 255,                          optional: raw ignored value
                               "ignore_color": [0, 0, 0]}              optional: ignored RGB colour
  root/images/<split>/*.jpg|png|...   any size, grey / RGBA / CMYK converted to RGB
  root/masks/<split>/*.png            paired with its image by file stem

A mask is either an index PNG (grey 'L', 16-bit 'I;16' or palette 'P': the stored value is
read, never the colour) whose raw values go through `label_map` (default: value k is class k)
and `ignore`, or an RGB(A) colour PNG whose colours are looked up in `colors` (and
`ignore_color`); both forms may be mixed. Everything the dataset does not name is an error,
in one line naming the file: an image without a mask, a mask without an image (found when
the source is built), a mask of another size than its image, a value or colour that
classes.json does not list (found when the example is read).
"""
import json
import os

import numpy as np
from PIL import Image

from flaseg.data import classes, datasets
from flaseg.data.datasets import DatasetError
from flaseg.errors import NotFoundError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
COLOR_MODES = ("RGB", "RGBA")


def _int(value, where: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, str)):
    raise DatasetError(f"{where}: expected an integer, got {value!r}")
  try:
    return int(value)
  except ValueError:
    raise DatasetError(f"{where}: expected an integer, got {value!r}") from None


def _color(value, where: str) -> tuple:
  if (not isinstance(value, (list, tuple)) or len(value) != 3
      or not all(isinstance(v, int) and 0 <= v <= 255 for v in value)):
    raise DatasetError(f"{where}: expected a colour [R, G, B] of 0..255, got {value!r}")
  return tuple(value)


def read_classes(path: str) -> dict:
  """classes.json as {'classes': tuple, 'colors': uint8 (K, 3) or None, 'label_map': {raw:
  class} or None, 'ignore': int or None, 'ignore_color': tuple or None}, checked."""
  if not os.path.isfile(path):
    raise NotFoundError(f"folder dataset: no {path} (it lists the classes: "
                        f'{{"classes": ["road", ...]}}, see flaseg/data/folder.py)')
  try:
    with open(path) as f:
      spec = json.load(f)
  except (OSError, ValueError) as e:
    raise DatasetError(f"cannot read {path}: {type(e).__name__}: {e}") from e
  if not isinstance(spec, dict):
    raise DatasetError(f"{path}: expected a JSON object with 'classes'")
  known = {"classes", "colors", "label_map", "ignore", "ignore_color"}
  unknown = sorted(set(spec) - known)
  if unknown:
    raise DatasetError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
  names = spec.get("classes")
  if (not isinstance(names, list) or not names
      or not all(isinstance(n, str) and n for n in names)):
    raise DatasetError(f"{path}: 'classes' must be a non-empty list of class names")
  if len(names) > 255:
    raise DatasetError(f"{path}: {len(names)} classes; at most 255 (labels are uint8)")
  k = len(names)
  colors = spec.get("colors")
  if colors is not None:
    if not isinstance(colors, list) or len(colors) != k:
      raise DatasetError(f"{path}: 'colors' must list one [R, G, B] per class ({k})")
    colors = np.array([_color(c, f"{path} colors[{i}]") for i, c in enumerate(colors)],
                      np.uint8)
    if len({tuple(c) for c in colors}) != k:
      raise DatasetError(f"{path}: 'colors' has a colour twice, so RGB masks are ambiguous")
  label_map = spec.get("label_map")
  if label_map is not None:
    if not isinstance(label_map, dict) or not label_map:
      raise DatasetError(f"{path}: 'label_map' must be an object {{\"raw value\": class}}")
    label_map = {_int(raw, f"{path} label_map key {raw!r}"):
                 _int(c, f"{path} label_map[{raw!r}]") for raw, c in label_map.items()}
    bad = {raw: c for raw, c in label_map.items() if not (0 <= c < k) or raw < 0}
    if bad:
      raise DatasetError(f"{path}: label_map {bad} maps to no class 0..{k - 1} "
                         f"(or has a negative raw value)")
  ignore = spec.get("ignore")
  ignore = None if ignore is None else _int(ignore, f"{path} ignore")
  ignore_color = spec.get("ignore_color")
  ignore_color = None if ignore_color is None else _color(ignore_color, f"{path} ignore_color")
  return {"classes": tuple(names), "colors": colors, "label_map": label_map, "ignore": ignore,
          "ignore_color": ignore_color}


def palette(spec: dict) -> np.ndarray:
  """The colours of classes.json, or VOC's colour map for as many classes."""
  if spec["colors"] is not None:
    return spec["colors"]
  return classes.voc_colormap(len(spec["classes"]))


def _files(folder: str, suffixes) -> dict:
  """{stem: path} of the files in `folder` whose suffix is one of `suffixes` (any case); two
  files with one stem are an error."""
  found = {}
  for name in sorted(os.listdir(folder)):
    stem, suffix = os.path.splitext(name)
    if suffix.lower() in suffixes and os.path.isfile(os.path.join(folder, name)):
      if stem in found:
        raise DatasetError(f"two files with the stem {stem!r} in {folder}: "
                           f"{os.path.basename(found[stem])} and {name}")
      found[stem] = os.path.join(folder, name)
  return found


class FolderSource(datasets.Source):
  """The examples of one split of a folder dataset (see the module docstring)."""

  def __init__(self, root: str, split: str, ignore_label: int = classes.IGNORE_LABEL):
    self.root = os.path.abspath(os.path.expanduser(root))
    self.spec = read_classes(os.path.join(self.root, "classes.json"))
    names = self.spec["classes"]
    meta = datasets.Meta(f"folder dataset {self.root}", names, palette(self.spec), "palette")
    image_dir = os.path.join(self.root, "images", split)
    mask_dir = os.path.join(self.root, "masks", split)
    for folder in (image_dir, mask_dir):
      if not os.path.isdir(folder):
        raise NotFoundError(f"folder dataset split {split!r}: no folder {folder}")
    images = _files(image_dir, IMAGE_SUFFIXES)
    if not images:
      raise NotFoundError(f"folder dataset split {split!r}: no images ({', '.join(IMAGE_SUFFIXES)}) "
                          f"in {image_dir}")
    masks = _files(mask_dir, MASK_SUFFIXES)
    for have, want, folder, what in ((images, masks, mask_dir, "image"),
                                     (masks, images, image_dir, "mask")):
      missing = sorted(set(have) - set(want))
      if missing:
        other = "mask" if what == "image" else "image"
        raise DatasetError(f"{len(missing)} {what}(s) without {other} in {folder}: "
                           f"{os.path.basename(have[missing[0]])}"
                           + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    self.names = sorted(images)
    self.images = [images[n] for n in self.names]
    self.masks = [masks[n] for n in self.names]
    super().__init__(meta, split, len(self.names), ignore_label=ignore_label)
    self._value_lut = self._values_to_classes()
    self._color_map = self._colors_to_classes()

  def _values_to_classes(self) -> np.ndarray:
    """Raw index value -> class id, `ignore_label`, or -1 (a value classes.json does not
    list); as long as the largest listed value + 1 (values past it are unlisted too)."""
    spec = self.spec
    pairs = spec["label_map"] or {k: k for k in range(self.num_classes)}
    size = max(list(pairs) + [spec["ignore"] or 0]) + 1
    lut = np.full(size, -1, np.int32)
    for raw, c in pairs.items():
      lut[raw] = c
    if spec["ignore"] is not None:
      lut[spec["ignore"]] = self.ignore_label
    return lut

  def _colors_to_classes(self) -> dict:
    """{R << 16 | G << 8 | B: class id or ignore_label}."""
    out = {}
    if self.spec["colors"] is not None:
      for k, (r, g, b) in enumerate(self.spec["colors"].astype(np.int64)):
        out[int(r << 16 | g << 8 | b)] = k
    if self.spec["ignore_color"] is not None:
      r, g, b = self.spec["ignore_color"]
      out[r << 16 | g << 8 | b] = self.ignore_label
    return out

  def read_mask(self, i: int) -> np.ndarray:
    """uint8 (H, W) class ids (and `ignore_label`) of mask `i`, index or colour."""
    path = self.masks[i]
    try:
      with Image.open(path) as im:
        mode = im.mode
    except Exception as e:
      raise DatasetError(f"cannot read mask {path}: {type(e).__name__}: {e}") from e
    if mode in COLOR_MODES:
      return self._map_colors(datasets.read_image(path), path)
    return self._map_values(datasets.read_label(path), path)

  def _map_values(self, raw: np.ndarray, path: str) -> np.ndarray:
    raw = raw.astype(np.int64)
    lut = self._value_lut
    inside = (raw >= 0) & (raw < len(lut))
    mapped = np.where(inside, lut[np.where(inside, raw, 0)], -1)
    if (mapped < 0).any():
      bad = np.unique(raw[mapped < 0])
      shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
      listed = "label_map" if self.spec["label_map"] else f"classes 0..{self.num_classes - 1}"
      raise DatasetError(f"mask {path} has values {shown} that {self.root}/classes.json does "
                         f"not list ({listed}, ignore {self.spec['ignore']})")
    return mapped.astype(np.uint8)

  def _map_colors(self, rgb: np.ndarray, path: str) -> np.ndarray:
    if not self._color_map:
      raise DatasetError(f"mask {path} is an RGB colour mask but {self.root}/classes.json has "
                         f"no 'colors' to read it with")
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) \
        | rgb[..., 2]
    unique, inverse = np.unique(codes, return_inverse=True)
    ids = np.array([self._color_map.get(int(c), -1) for c in unique], np.int64)
    if (ids < 0).any():
      bad = [f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unique[ids < 0][:4]]
      raise DatasetError(f"mask {path} has colours {', '.join(bad)}"
                         f"{', ...' if (ids < 0).sum() > 4 else ''} that "
                         f"{self.root}/classes.json does not list")
    return ids[inverse.reshape(codes.shape)].astype(np.uint8)

  def _read(self, i: int):
    image = datasets.read_image(self.images[i])
    label = self.read_mask(i)
    datasets.check_sizes(image, label, self.images[i], self.masks[i])
    return image, label, self.names[i]

  def __repr__(self) -> str:
    return f"FolderSource({self.root!r}, split={self.split!r}, {len(self)} examples)"


def folder(cfg, split: str, seed: int = 0) -> FolderSource:
  """The `flaseg.data.DATASETS` builder: `config.data.root` is the folder."""
  del seed
  if not cfg.root:
    raise NotFoundError("config.data.name='folder' needs --config.data.root=DIR (a folder "
                        "with classes.json, images/<split>/ and masks/<split>/)")
  source = FolderSource(cfg.root, split, cfg.get("ignore_label", classes.IGNORE_LABEL))
  if cfg.get("skip_corrupt", False):
    source.drop_corrupt(cfg.get("num_threads", 2))
  return source
