"""config.data.name='folder': images and masks paired by stem, classes.json, index and colour
masks, one-line errors naming the file; and a `:smoke` run trained on such a folder."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import own_data
from flaseg import config_lib, data
from flaseg.data.datasets import DatasetError
from flaseg.errors import NotFoundError


def _cfg(root, **kw):
  c = config_lib.load("configs/fla_folder.py")
  c.data.root = str(root)
  c.update(kw)
  return c.data


@pytest.fixture
def dataset(tmp_path, monkeypatch):
  monkeypatch.chdir(own_data.REPO)
  truth = own_data.write_dataset(str(tmp_path))
  return tmp_path, truth


def test_index_and_colour_masks_read_as_the_class_ids_written(dataset):
  root, truth = dataset
  for split in ("train", "val"):
    source = data.build_source(_cfg(root), split)
    assert source.class_names == tuple(own_data.CLASSES) and source.num_classes == 3
    np.testing.assert_array_equal(source.palette, own_data.COLORS)
    assert [source[i]["name"] for i in range(len(source))] == sorted(truth[split])
    for i in range(len(source)):
      example = source[i]
      np.testing.assert_array_equal(example["label"], truth[split][example["name"]])
      assert example["image"].shape == (*own_data.SIZE, 3) and example["image"].dtype == np.uint8
  # both forms are there: grey index PNGs and RGB colour PNGs
  modes = {Image.open(os.path.join(root, "masks", "train", f)).mode
           for f in os.listdir(os.path.join(root, "masks", "train"))}
  assert modes == {"L", "RGB"}


def test_classes_only_and_defaults(tmp_path):
  """Only 'classes': value k is class k, no ignore value, VOC colours."""
  for split in ("train",):
    os.makedirs(tmp_path / "images" / split)
    os.makedirs(tmp_path / "masks" / split)
  (tmp_path / "classes.json").write_text(json.dumps({"classes": ["a", "b"]}))
  Image.fromarray(np.full((4, 5), 9, np.uint8)).convert("L").save(
      tmp_path / "images" / "train" / "x.png")  # a grey image: read as RGB
  Image.fromarray(np.array([[0, 1, 1, 0, 1]] * 4, np.uint8)).save(
      tmp_path / "masks" / "train" / "x.png")
  source = data.build_source(_cfg(tmp_path), "train")
  example = source[0]
  assert example["image"].shape == (4, 5, 3)
  np.testing.assert_array_equal(example["label"], [[0, 1, 1, 0, 1]] * 4)
  names, palette = data.class_names_and_palette(_cfg(tmp_path))
  assert names == ("a", "b")
  np.testing.assert_array_equal(palette, [[0, 0, 0], [128, 0, 0]])  # VOC's first two colours


def _one_line_error(exc_type, match, fn):
  with pytest.raises(exc_type, match=match) as e:
    fn()
  assert "\n" not in str(e.value)
  return str(e.value)


def test_errors_name_the_file(dataset):
  root, _ = dataset
  train_masks = root / "masks" / "train"
  build = lambda: data.build_source(_cfg(root), "train")
  # image without mask, mask without image (found when the source is built)
  os.rename(train_masks / "train_000.png", root / "spare.png")
  _one_line_error(DatasetError, r"1 image\(s\) without mask in .*masks/train: train_000.png",
                  build)
  os.rename(root / "spare.png", train_masks / "train_000.png")
  Image.fromarray(np.zeros((40, 56), np.uint8)).save(train_masks / "orphan.png")
  _one_line_error(DatasetError, r"1 mask\(s\) without image in .*images/train: orphan.png",
                  build)
  os.remove(train_masks / "orphan.png")
  # a mask of another size; a value, a colour not in classes.json (found when read)
  source = build()
  Image.fromarray(np.zeros((40, 50), np.uint8)).save(train_masks / "train_000.png")
  _one_line_error(DatasetError, r"image .*train_000.png is 56x40 but its label "
                  r".*masks/train/train_000.png is 50x40", lambda: source[0])
  Image.fromarray(np.full((40, 56), 8, np.uint8)).save(train_masks / "train_000.png")
  _one_line_error(DatasetError, r"mask .*masks/train/train_000.png has values 8 that "
                  r".*classes.json does not list", lambda: source[0])
  rgb = np.zeros((40, 56, 3), np.uint8)
  rgb[0, 0] = (1, 2, 3)
  rgb[1:] = own_data.COLORS[1]
  Image.fromarray(rgb).save(train_masks / "train_001.png")
  _one_line_error(DatasetError, r"mask .*train_001.png has colours \(0, 0, 0\), \(1, 2, 3\) "
                  r"that .*classes.json does not list", lambda: source[1])
  # classes.json missing or wrong
  (root / "classes.json").write_text(json.dumps({"classes": "road"}))
  _one_line_error(DatasetError, r"classes.json: 'classes' must be a non-empty list", build)
  (root / "classes.json").write_text(json.dumps({"classes": ["a"], "colours": []}))
  _one_line_error(DatasetError, r"classes.json: unknown key\(s\) \['colours'\]", build)
  os.remove(root / "classes.json")
  _one_line_error(NotFoundError, r"no .*classes.json", build)
  _one_line_error(NotFoundError, r"needs --config.data.root", lambda: data.build_source(
      _cfg(""), "train"))


@pytest.mark.slow
def test_smoke_training_on_a_folder(own_data_run):
  """The README's training command trained on the folder (both mask forms), evaluated, and
  stored the median-frequency class weights of the training labels in the workdir."""
  workdir = own_data_run["workdir"]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  evals = [r for r in records if "miou" in r]
  assert evals and len(evals[-1]["per_class_iou"]) == 3
  assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
  with open(os.path.join(workdir, "class_weights.json")) as f:
    stored = json.load(f)
  # reference: median frequency balancing over the labels the test wrote
  labels = list(own_data_run["truth"]["train"].values())
  pixels = np.array([sum((l == k).sum() for l in labels) for k in range(3)], float)
  image_pixels = np.array([sum(l.size for l in labels if (l == k).any()) for k in range(3)],
                          float)
  freq = pixels / image_pixels
  np.testing.assert_allclose(stored["weights"], np.median(freq) / freq, rtol=1e-12)
  assert stored["pixels"] == pixels.astype(int).tolist()
