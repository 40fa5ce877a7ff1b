"""Class names, colour palettes and label maps of the real datasets.

A label map is a lookup table of 256 int16 entries: raw value in the label PNG -> train id
(0..K-1) or the ignore label (255 in the maps below; `with_ignore_label` changes it); -1
marks a value the dataset never contains, so that a file holding one is reported instead of
silently trained on.
"""
import numpy as np

from flaseg.errors import ConfigError

IGNORE_LABEL = 255  # the ignore label of the maps below (config.data.ignore_label's default)


def label_map(pairs, ignored=(), ignore_label: int = IGNORE_LABEL) -> np.ndarray:
  """A lookup table from `{raw: train_id}` pairs; `ignored` raw values map to `ignore_label`."""
  lut = np.full(256, -1, np.int16)
  for raw in ignored:
    lut[raw] = ignore_label
  for raw, train_id in pairs:
    lut[raw] = train_id
  lut.setflags(write=False)
  return lut


def with_ignore_label(lut: np.ndarray, ignore_label: int) -> np.ndarray:
  """`lut` (a map of this module) with its ignored entries mapped to `ignore_label`."""
  if ignore_label == IGNORE_LABEL:
    return lut
  out = np.where(lut == IGNORE_LABEL, ignore_label, lut).astype(np.int16)
  out.setflags(write=False)
  return out


def check_ignore_label(ignore_label, num_classes: int, title: str) -> int:
  """`ignore_label` as an int; it must be a uint8 value that is none of the K class ids."""
  if not (isinstance(ignore_label, (int, np.integer)) and not isinstance(ignore_label, bool)
          and num_classes <= ignore_label <= 255):
    raise ConfigError(f"config.data.ignore_label={ignore_label!r}: expected an int in "
                     f"{num_classes}..255 (labels are uint8; 0..{num_classes - 1} are "
                     f"{title}'s classes)")
  return int(ignore_label)


def voc_colormap(n: int = 256) -> np.ndarray:
  """The PASCAL VOC colour map: the bits of the index spread over R, G, B, high bit first."""
  cmap = np.zeros((n, 3), np.uint8)
  for i in range(n):
    c, rgb = i, [0, 0, 0]
    for shift in range(7, -1, -1):
      for channel in range(3):
        rgb[channel] |= ((c >> channel) & 1) << shift
      c >>= 3
    cmap[i] = rgb
  return cmap


# Cityscapes (cityscapesScripts `labels.py`): the 19 evaluated classes, their colours and the
# labelId of each trainId; every other labelId (0-33) is ignored.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle")
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32)], np.uint8)
CITYSCAPES_LABEL_IDS = np.array(
    [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], np.uint8)
# *_gtFine_labelIds.png: ids 0-33 (255, written by some tools for the license plate's -1).
CITYSCAPES_ID_MAP = label_map([(int(i), k) for k, i in enumerate(CITYSCAPES_LABEL_IDS)],
                              ignored=list(range(34)) + [255])
# *_gtFine_labelTrainIds.png (cityscapesScripts createTrainIdLabelImgs): 0-18 and 255.
CITYSCAPES_TRAIN_ID_MAP = label_map([(k, k) for k in range(19)], ignored=[255])

# ADE20K SceneParsing (ADEChallengeData2016, objectInfo150): 0 is "other", ignored; class k
# is stored as k + 1. Palette of the scene-parsing toolkit as used by mmsegmentation.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
    "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator",
    "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
    "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
    "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
    "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag")
ADE20K_PALETTE = np.array([
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255)], np.uint8)
ADE20K_MAP = label_map([(k + 1, k) for k in range(150)], ignored=[0])

# PASCAL VOC 2012 (and SBD's SegmentationClassAug): 0-20, 255 on object borders.
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")
VOC_COLORMAP = voc_colormap()
VOC_PALETTE = VOC_COLORMAP[:21]
VOC_MAP = label_map([(k, k) for k in range(21)], ignored=[255])

# PASCAL Context as written by mmsegmentation's converter (Detail API, 59 classes + 0 for
# background). 60 classes keep the background; 59 ignore it and shift the rest down by one.
CONTEXT_CLASSES_60 = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "table", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
    "sofa", "train", "tvmonitor", "bag", "bed", "bench", "book", "building", "cabinet",
    "ceiling", "cloth", "computer", "cup", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "keyboard", "light", "mountain", "mouse", "curtain", "platform",
    "sign", "plate", "road", "rock", "shelves", "sidewalk", "sky", "snow", "bedclothes",
    "track", "tree", "truck", "wall", "water", "window", "wood")
CONTEXT_CLASSES_59 = CONTEXT_CLASSES_60[1:]
CONTEXT_PALETTE_60 = ADE20K_PALETTE[:60]   # mmsegmentation's colours for Context
CONTEXT_PALETTE_59 = ADE20K_PALETTE[1:60]
CONTEXT_MAP_60 = label_map([(k, k) for k in range(60)])
CONTEXT_MAP_59 = label_map([(k + 1, k) for k in range(59)], ignored=[0])


def describe(lut: np.ndarray) -> str:
  """The raw values a label map accepts, as ranges: '0-33, 255'."""
  values = np.flatnonzero(lut >= 0)
  parts, start = [], None
  for i, v in enumerate(values):
    if start is None:
      start = v
    if i + 1 == len(values) or values[i + 1] != v + 1:
      parts.append(f"{start}" if start == v else f"{start}-{v}")
      start = None
  return ", ".join(parts)
