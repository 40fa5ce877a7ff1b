"""Builds the tiny TFDS Cityscapes fixture under tests/testdata/tfds (run once; needs TensorFlow).

  python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu \
      tensorflow-datasets==4.9.10 pillow array_record
  /tmp/tfvenv/bin/python scripts/make_cityscapes_tfds_fixture.py

It writes a fake Cityscapes tree (`write_tree`: four 16x32 frames, train / val / test, in the
real leftImg8bit / gtFine layout), zips it like the official downloads and runs TFDS's own
`cityscapes/semantic_segmentation` builder on the zips with file_format=array_record, exactly
as scripts/prepare_cityscapes_tfds.sh does with the real zips. The only change to the builder
is its feature shapes (fixed at 1024x2048 in TFDS), made (None, None) so tiny images encode.
The tests read the fixture with tensorflow-datasets alone and compare it with `write_tree`'s
files, which is why this module imports TensorFlow only inside `main`.
"""
import os
import shutil
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "testdata", "tfds")

# (split, city, sequence, frame) of the fake frames.
FRAMES = (("train", "aachen", 0, 19), ("train", "bochum", 1, 19), ("val", "frankfurt", 0, 294),
          ("test", "berlin", 0, 19))
HEIGHT, WIDTH = 16, 32
# labelIds painted in vertical stripes: classes (7 road, 8 sidewalk, 11 building, 23 sky,
# 24 person, 26 car, 33 bicycle) and ignored ids (0 unlabeled, 4 static).
STRIPE_IDS = (7, 8, 11, 0, 23, 24, 26, 33, 4)


def frame_name(city: str, seq: int, frame: int) -> str:
  return f"{city}_{seq:06d}_{frame:06d}"


def fake_frame(k: int, height: int = HEIGHT, width: int = WIDTH):
  """Frame k: (uint8 (H, W, 3) image, uint8 (H, W) labelIds); stripes 4 pixels wide."""
  stripe = (np.arange(width) // 4 + k) % len(STRIPE_IDS)
  ids = np.asarray(STRIPE_IDS, np.uint8)[stripe]
  label = np.repeat(ids[None, :], height, axis=0)
  image = np.zeros((height, width, 3), np.uint8)
  image[..., 0] = label * 7
  image[..., 1] = np.arange(height, dtype=np.uint8)[:, None] * 9 + k
  image[..., 2] = np.arange(width, dtype=np.uint8)[None, :] * 5
  return image, label


def write_tree(root: str, frames=FRAMES, height: int = HEIGHT, width: int = WIDTH,
               train_ids: bool = False) -> list:
  """Writes `root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` and
  `root/gtFine/<split>/<city>/<name>_gtFine_labelIds.png` (and `_labelTrainIds.png` if
  `train_ids`); returns the names in order."""
  names = []
  for k, (split, city, seq, frame) in enumerate(frames):
    name = frame_name(city, seq, frame)
    image, label = fake_frame(k, height, width)
    image_dir = os.path.join(root, "leftImg8bit", split, city)
    label_dir = os.path.join(root, "gtFine", split, city)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    Image.fromarray(image).save(os.path.join(image_dir, f"{name}_leftImg8bit.png"))
    Image.fromarray(label).save(os.path.join(label_dir, f"{name}_gtFine_labelIds.png"))
    if train_ids:
      lut = np.full(256, 255, np.uint8)
      lut[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = range(19)
      Image.fromarray(lut[label]).save(
          os.path.join(label_dir, f"{name}_gtFine_labelTrainIds.png"))
    names.append(name)
  return names


def _zip(folder: str, top: str, path: str):
  """Zips `folder/top/...` with `top/` as the archive's root, like the official zips."""
  with zipfile.ZipFile(path, "w") as z:
    for dirpath, _, filenames in os.walk(os.path.join(folder, top)):
      for f in sorted(filenames):
        full = os.path.join(dirpath, f)
        z.write(full, os.path.relpath(full, folder))


def main():
  import tensorflow_datasets as tfds
  from tensorflow_datasets.datasets.cityscapes import cityscapes_dataset_builder as cs

  original_info = cs.Builder._info

  def tiny_info(self):  # the builder's features with free image sizes
    info = original_info(self)
    features = dict(info.features)
    features["image_left"] = tfds.features.Image(shape=(None, None, 3), encoding_format="png")
    features["segmentation_label"] = tfds.features.Image(
        shape=(None, None, 1), encoding_format="png", use_colormap=True)
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                          homepage=info.homepage)

  cs.Builder._info = tiny_info
  with tempfile.TemporaryDirectory() as tmp:
    tree, manual, data_dir = (os.path.join(tmp, d) for d in ("tree", "manual", "data"))
    os.makedirs(manual)
    write_tree(tree)
    _zip(tree, "leftImg8bit", os.path.join(manual, "leftImg8bit_trainvaltest.zip"))
    _zip(tree, "gtFine", os.path.join(manual, "gtFine_trainvaltest.zip"))
    builder = tfds.builder("cityscapes/semantic_segmentation", data_dir=data_dir,
                           file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
    shutil.rmtree(FIXTURE, ignore_errors=True)
    shutil.copytree(os.path.join(data_dir, "cityscapes"), os.path.join(FIXTURE, "cityscapes"),
                    ignore=shutil.ignore_patterns("downloads", "*.lock"))
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(FIXTURE) for f in fs)
  print(f"wrote {FIXTURE} ({total} bytes)")


if __name__ == "__main__":
  sys.exit(main())
