"""The README's "Your own images and data" walk-through, as the tests run it: a folder dataset
with both mask forms, a folder of mixed photos, and the three commands (train, predict,
export) at `:smoke` size, run in a scratch folder that links to the repository's configs/.

tests/conftest.py's `own_data_run` fixture trains once per session; test_predict.py,
test_export_model.py and test_folder_dataset.py use it, and check that README.md shows
exactly these commands.
"""
import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What README.md shows, run in a folder holding mydata/, photos/ and configs/.
TRAIN = ("python -m flaseg.main --config=configs/fla_folder.py:smoke --workdir=my_run "
         "--config.data.root=mydata --config.loss.class_weights=frequency")
PREDICT = ("python -m flaseg.predict --config=configs/fla_folder.py:smoke "
           "--config.data.root=mydata --workdir=my_run --input=photos --output=predictions "
           "--probabilities --batch_size=2")
EXPORT = ("python -m flaseg.export_model --config=configs/fla_folder.py:smoke "
          "--config.data.root=mydata --workdir=my_run --output=mine.jax --size=40x56")
EXPORT_ONNX = ("python -m flaseg.export_model --config=configs/fla_folder.py:smoke "
               "--config.data.root=mydata --workdir=my_run --output=mine.onnx --size=40x56 "
               "--format=onnx")

CLASSES = ["background", "road", "car"]
COLORS = [[70, 70, 70], [128, 64, 128], [0, 0, 142]]
RAW = [0, 7, 26]           # the raw value of each class in index masks (classes.json label_map)
IGNORE_RAW = 255
IGNORE_COLOR = [255, 255, 255]
SIZE = (40, 56)            # (H, W) of the dataset's images


def scene(rng, height: int, width: int):
  """(uint8 RGB image, uint8 class ids with 255 = ignored): road below a horizon, a car box,
  a few ignored pixels; each class has its own colour plus noise."""
  label = np.zeros((height, width), np.uint8)
  horizon = int(rng.integers(height // 3, 2 * height // 3))
  label[horizon:] = 1
  y, x = int(rng.integers(0, height - 10)), int(rng.integers(0, width - 14))
  label[y:y + 10, x:x + 14] = 2
  label[rng.random((height, width)) < 0.02] = 255
  base = np.array([[90, 90, 80], [120, 70, 120], [20, 20, 150]], np.float32)
  image = base[np.minimum(label, 2)] + rng.normal(0, 12, (height, width, 3))
  return np.clip(image, 0, 255).astype(np.uint8), label


def index_mask(label: np.ndarray) -> np.ndarray:
  """Class ids -> the raw values of classes.json's label_map (ignored -> 255)."""
  lut = np.full(256, IGNORE_RAW, np.uint8)
  lut[:3] = RAW
  return lut[label]


def color_mask(label: np.ndarray) -> np.ndarray:
  pal = np.array(COLORS + [IGNORE_COLOR] * 253, np.uint8)
  return pal[np.where(label == 255, 3, label)]


def write_dataset(root: str, num_train: int = 8, num_val: int = 2, seed: int = 0) -> dict:
  """root/{classes.json, images/<split>/, masks/<split>/}: even examples have index masks
  (grey PNG of raw values), odd ones RGB colour masks; images alternate JPEG / PNG (lossless
  for PNG). Returns {split: {name: class ids}}."""
  rng = np.random.default_rng(seed)
  with open(os.path.join(root, "classes.json"), "w") as f:
    json.dump({"classes": CLASSES, "colors": COLORS,
               "label_map": {str(r): k for k, r in enumerate(RAW)}, "ignore": IGNORE_RAW,
               "ignore_color": IGNORE_COLOR}, f)
  truth = {}
  for split, n in (("train", num_train), ("val", num_val)):
    os.makedirs(os.path.join(root, "images", split))
    os.makedirs(os.path.join(root, "masks", split))
    truth[split] = {}
    for i in range(n):
      image, label = scene(rng, *SIZE)
      name = f"{split}_{i:03d}"
      Image.fromarray(image).save(os.path.join(root, "images", split,
                                               name + (".jpg" if i % 2 else ".png")))
      mask = index_mask(label) if i % 2 == 0 else color_mask(label)
      Image.fromarray(mask).save(os.path.join(root, "masks", split, name + ".png"))
      truth[split][name] = label
  return truth


def truncated_png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  data = buf.getvalue()
  return data[:len(data) // 2]


def write_photos(folder: str, seed: int = 1) -> dict:
  """Mixed images to predict: two RGB of the dataset's size (one batch), a grey PNG, an RGBA
  PNG, a palette GIF-like PNG, a wide JPEG in a subfolder, a file that is no image and a
  truncated PNG. Returns {name: path} of the readable ones."""
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(folder, "more"))
  good = {}
  def save(name, array, mode=None, suffix=".png"):
    path = os.path.join(folder, name + suffix)
    im = Image.fromarray(array)
    im = im.convert(mode) if mode else im
    im.save(path)
    good[name] = path
  save("street_a", scene(rng, *SIZE)[0], suffix=".jpg")
  save("street_b", scene(rng, *SIZE)[0])
  save("grey", scene(rng, 33, 70)[0], mode="L")
  rgba = np.concatenate([scene(rng, 50, 30)[0], np.full((50, 30, 1), 200, np.uint8)], -1)
  save("rgba", rgba)
  save("palette", scene(rng, 41, 41)[0], mode="P")
  save(os.path.join("more", "wide"), scene(rng, 24, 96)[0], suffix=".jpeg")
  with open(os.path.join(folder, "notes.jpg"), "wb") as f:
    f.write(b"this is not an image")
  with open(os.path.join(folder, "cut.png"), "wb") as f:
    f.write(truncated_png(scene(rng, *SIZE)[0]))
  return good


def run(command: str, cwd: str, timeout: int = 900):
  """One README command (its `python` is this interpreter), in `cwd`."""
  args = command.split()
  assert args[0] == "python"
  return subprocess.run([sys.executable] + args[1:], cwd=cwd, capture_output=True, text=True,
                        timeout=timeout)


def make_run(base: str) -> dict:
  """The scratch folder with configs/ (a link), mydata/, photos/ and my_run trained by
  TRAIN. Returns the paths and the dataset's ground truth."""
  base = str(base)
  os.symlink(os.path.join(REPO, "configs"), os.path.join(base, "configs"))
  data = os.path.join(base, "mydata")
  os.makedirs(data)
  truth = write_dataset(data)
  photos = write_photos(os.path.join(base, "photos"))
  result = run(TRAIN, base)
  assert result.returncode == 0, result.stderr[-3000:]
  return {"base": base, "data": data, "truth": truth, "photos": photos,
          "workdir": os.path.join(base, "my_run"), "train": result}
