"""Real dataset sources on tiny trees written here in each download's exact layout
(Cityscapes, ADE20K, VOC + SBD, PASCAL Context), the committed TFDS Cityscapes fixture,
bad-input errors, the submission export, and one CLI train + eval + export run."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from PIL import Image

from flaseg import export
from flaseg.data import DATASETS, build_source, classes, datasets, pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFDS_FIXTURE = os.path.join(REPO, "tests", "testdata", "tfds")


def _load_fixture_script():
  """scripts/make_cityscapes_tfds_fixture.py: the fake Cityscapes tree behind the fixture."""
  path = os.path.join(REPO, "scripts", "make_cityscapes_tfds_fixture.py")
  spec = importlib.util.spec_from_file_location("make_cityscapes_tfds_fixture", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


fake_cityscapes = _load_fixture_script()

# Frames of the Cityscapes trees written by the tests: 3 train (two cities), 2 val, 1 test.
CS_FRAMES = (("train", "aachen", 0, 19), ("train", "aachen", 1, 19), ("train", "bochum", 0, 7),
             ("val", "frankfurt", 0, 294), ("val", "lindau", 0, 19), ("test", "berlin", 0, 19))


def data_cfg(name, root, **kwargs):
  return ml_collections.ConfigDict(dict(name=name, root=str(root), train_split="train",
                                        val_split="val", num_threads=1, **kwargs))


def write_cityscapes(root, **kwargs):
  return fake_cityscapes.write_tree(str(root), CS_FRAMES, 32, 64, **kwargs)


def cs_path(root, split, name, kind):
  city = name.split("_")[0]
  if kind == "image":
    return os.path.join(root, "leftImg8bit", split, city, f"{name}_leftImg8bit.png")
  return os.path.join(root, "gtFine", split, city, f"{name}_gtFine_{kind}.png")


def save_jpg(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(image).save(path, quality=95)


def save_png(path, array, palette=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(array)
  if palette is not None:
    image.putpalette(np.asarray(palette, np.uint8).ravel().tolist())
  image.save(path)


def smooth_image(rng, h, w):
  """A smooth image (so that JPEG keeps it close) of size (h, w)."""
  base = rng.integers(40, 200, 3)
  ramp = np.linspace(0, 40, w)[None, :, None] + np.linspace(0, 20, h)[:, None, None]
  return np.clip(base + ramp, 0, 255).astype(np.uint8)


ADE_SIZES = {"train": ((32, 64), (40, 24), (32, 64)), "val": ((32, 64), (48, 40))}


def write_ade20k(root):
  """ADEChallengeData2016/{images,annotations}/{training,validation}; returns {name: raw}."""
  rng = np.random.default_rng(0)
  raw = {}
  for split, folder in (("train", "training"), ("val", "validation")):
    for i, (h, w) in enumerate(ADE_SIZES[split]):
      name = f"ADE_{split}_{i + 1:08d}"
      label = ((np.arange(h * w).reshape(h, w) // 7 + i) % 151).astype(np.uint8)  # 0..150
      image = smooth_image(rng, h, w)
      if i == 1:  # ADE20K has a few grey JPEGs
        image = image[..., :1].repeat(3, -1)
        save_jpg(os.path.join(root, "ADEChallengeData2016", "images", folder, f"{name}.jpg"),
                 image[..., 0])
      else:
        save_jpg(os.path.join(root, "ADEChallengeData2016", "images", folder, f"{name}.jpg"),
                 image)
      save_png(os.path.join(root, "ADEChallengeData2016", "annotations", folder, f"{name}.png"),
               label)
      raw[name] = (image, label)
  return raw


VOC_SPLITS = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"],
              "trainaug": ["2007_000032", "2007_000039", "2008_000002"]}


def voc_label(k, h=24, w=32):
  """Classes 0-20 in blocks with a 255 border around them, as VOC's masks."""
  label = ((np.arange(w)[None, :] // 4 + np.arange(h)[:, None] // 6 + k) % 21).astype(np.uint8)
  label[::6] = 255
  return label


def write_voc(root):
  """VOCdevkit/VOC2012 with palette-indexed SegmentationClass, grey SegmentationClassAug
  (whose values differ by +1 mod 21 from SegmentationClass, to tell them apart)."""
  base = os.path.join(root, "VOCdevkit", "VOC2012")
  rng = np.random.default_rng(1)
  names = sorted(set(sum(VOC_SPLITS.values(), [])))
  for k, name in enumerate(names):
    save_jpg(os.path.join(base, "JPEGImages", f"{name}.jpg"), smooth_image(rng, 24, 32))
    label = voc_label(k)
    if name != "2008_000002":  # SBD-only image: no SegmentationClass mask
      save_png(os.path.join(base, "SegmentationClass", f"{name}.png"), label,
               classes.VOC_COLORMAP)
    aug = np.where(label == 255, 255, (label + 1) % 21).astype(np.uint8)
    save_png(os.path.join(base, "SegmentationClassAug", f"{name}.png"), aug)
  for split, split_names in VOC_SPLITS.items():
    path = os.path.join(base, "ImageSets", "Segmentation", f"{split}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write("".join(n + "\n" for n in split_names))
  return base


CONTEXT_SPLITS = {"train": ["2008_000002", "2008_000003"], "val": ["2008_000007"]}


def write_context(root):
  """VOCdevkit/VOC2010 as mmseg's converter leaves it: SegmentationClassContext 0..59."""
  base = os.path.join(root, "VOCdevkit", "VOC2010")
  rng = np.random.default_rng(2)
  raw = {}
  for k, name in enumerate(sum(CONTEXT_SPLITS.values(), [])):
    save_jpg(os.path.join(base, "JPEGImages", f"{name}.jpg"), smooth_image(rng, 24, 32))
    label = ((np.arange(24 * 32).reshape(24, 32) // 5 + k) % 60).astype(np.uint8)
    save_png(os.path.join(base, "SegmentationClassContext", f"{name}.png"), label)
    raw[name] = label
  for split, names in CONTEXT_SPLITS.items():
    path = os.path.join(base, "ImageSets", "SegmentationContext", f"{split}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write("".join(n + "\n" for n in names))
  return raw


def assert_source_format(source, num_classes, ignore_label=255):
  assert source.num_classes == num_classes == len(source.class_names)
  assert source.palette.shape == (num_classes, 3) and source.palette.dtype == np.uint8
  assert source.ignore_label == ignore_label
  for i in range(len(source)):
    ex = source[i]
    assert ex["image"].dtype == np.uint8 and ex["image"].ndim == 3 and ex["image"].shape[2] == 3
    assert ex["label"].dtype == np.uint8 and ex["label"].shape == ex["image"].shape[:2]
    assert isinstance(ex["name"], str)
    values = set(np.unique(ex["label"]).tolist())
    assert values <= set(range(num_classes)) | {ignore_label}, values


# Cityscapes.


def test_cityscapes_splits_names_decoding_and_label_ids(tmp_path):
  names = write_cityscapes(tmp_path)
  train = build_source(data_cfg("cityscapes", tmp_path), "train")
  val = build_source(data_cfg("cityscapes", tmp_path), "val")
  assert (len(train), len(val)) == (3, 2)
  assert [train[i]["name"] for i in range(3)] == sorted(names[:3])
  assert [val[i]["name"] for i in range(2)] == ["frankfurt_000000_000294", "lindau_000000_000019"]
  assert train.class_names[0] == "road" and train.class_names[-1] == "bicycle"
  assert_source_format(train, 19)
  for i in range(2):
    ex = val[i]
    image, raw = fake_cityscapes.fake_frame(3 + i, 32, 64)
    np.testing.assert_array_equal(ex["image"], image)  # PNG: exact
    np.testing.assert_array_equal(ex["label"], classes.CITYSCAPES_ID_MAP[raw])
  # labelIds -> trainIds: 7 road -> 0, 26 car -> 13, 33 bicycle -> 18, 0 and 4 -> 255.
  np.testing.assert_array_equal(classes.CITYSCAPES_ID_MAP[[7, 8, 11, 23, 24, 26, 33, 0, 4]],
                                [0, 1, 2, 10, 11, 13, 18, 255, 255])
  assert set(np.unique(val[0]["label"])) == {0, 1, 2, 10, 11, 13, 18, 255}


def test_cityscapes_reads_label_train_ids_when_present(tmp_path):
  names = write_cityscapes(tmp_path, train_ids=True)
  source = build_source(data_cfg("cityscapes", tmp_path), "val")
  _, raw = fake_cityscapes.fake_frame(3, 32, 64)
  np.testing.assert_array_equal(source[0]["label"], classes.CITYSCAPES_ID_MAP[raw])
  # Proof that the trainIds file is the one read: change it alone.
  save_png(cs_path(tmp_path, "val", names[3], "labelTrainIds"), np.full((32, 64), 5, np.uint8))
  assert (build_source(data_cfg("cityscapes", tmp_path), "val")[0]["label"] == 5).all()


def test_cityscapes_test_split_and_determinism(tmp_path):
  write_cityscapes(tmp_path)
  test = build_source(data_cfg("cityscapes", tmp_path), "test")
  assert len(test) == 1 and test[0]["name"] == "berlin_000000_000019"
  a, b = (build_source(data_cfg("cityscapes", tmp_path), "train") for _ in range(2))
  for i in range(len(a)):
    assert a[i]["name"] == b[i]["name"]
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    np.testing.assert_array_equal(a[i]["label"], b[i]["label"])
  np.testing.assert_array_equal(a[-1]["label"], a[2]["label"])
  with pytest.raises(IndexError):
    a[3]


# TFDS (array_record fixture built by scripts/make_cityscapes_tfds_fixture.py).


def test_cityscapes_tfds_fixture_matches_the_files_it_was_built_from(tmp_path):
  fake_cityscapes.write_tree(str(tmp_path))  # the fixture's own frames, 16x32
  for split, n in (("train", 2), ("val", 1), ("test", 1)):
    tfds_source = build_source(data_cfg("cityscapes_tfds", TFDS_FIXTURE), split)
    files = build_source(data_cfg("cityscapes", tmp_path), split)
    assert len(tfds_source) == len(files) == n
    assert_source_format(tfds_source, 19)
    by_name = {files[i]["name"]: files[i] for i in range(n)}
    for i in range(n):
      ex = tfds_source[i]
      np.testing.assert_array_equal(ex["image"], by_name[ex["name"]]["image"])
      np.testing.assert_array_equal(ex["label"], by_name[ex["name"]]["label"])  # ids mapped
  assert tfds_source.export_format == "cityscapes"
  tfds_250 = build_source(data_cfg("cityscapes_tfds", TFDS_FIXTURE, ignore_label=250), "train")
  files_250 = build_source(data_cfg("cityscapes", tmp_path, ignore_label=250), "train")
  assert_source_format(tfds_250, 19, ignore_label=250)
  by_name = {files_250[i]["name"]: files_250[i]["label"] for i in range(2)}
  for i in range(2):
    np.testing.assert_array_equal(tfds_250[i]["label"], by_name[tfds_250[i]["name"]])
  assert "tensorflow" not in sys.modules
  with pytest.raises(ValueError, match="splits"):
    build_source(data_cfg("cityscapes_tfds", TFDS_FIXTURE), "extra")
  with pytest.raises(FileNotFoundError, match="prepare_cityscapes_tfds.sh"):
    build_source(data_cfg("cityscapes_tfds", tmp_path), "train")


# ADE20K.


def test_ade20k_reduce_zero_label_grey_jpegs_and_eval_resize(tmp_path):
  raw = write_ade20k(tmp_path)
  cfg = data_cfg("ade20k", tmp_path, eval_resize=(32, 2048))
  train, val = build_source(cfg, "train"), build_source(cfg, "val")
  assert (len(train), len(val)) == (3, 2)
  assert_source_format(train, 150)
  assert train.class_names[0] == "wall" and train.class_names[-1] == "flag"
  for i in range(3):  # training images keep their size
    ex = train[i]
    image, label = raw[ex["name"]]
    assert "original_size" not in ex
    np.testing.assert_array_equal(ex["label"], np.where(label == 0, 255, label - 1))
    assert np.abs(ex["image"].astype(int) - image).mean() < 3  # JPEG
  # Validation: short side 32 -> stays; 48x40 -> 38x32 (mmseg keep-ratio rule), labels nearest.
  assert val[0]["label"].shape == (32, 64) and "original_size" not in val[0]
  ex = val[1]
  assert ex["image"].shape == (38, 32, 3) and ex["label"].shape == (38, 32)
  assert ex["original_size"] == (48, 40)
  assert set(np.unique(ex["label"])) <= set(np.unique(np.where(raw[ex["name"]][1] == 0, 255,
                                                               raw[ex["name"]][1] - 1)))
  assert datasets.rescaled_size(512, 2048 * 3, 512, 2048) == (171, 2048)  # long side bound


# PASCAL VOC and Context.


@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc_splits_palette_indices_and_sbd_labels(tmp_path, sub):
  write_voc(tmp_path)
  cfg = data_cfg("voc", os.path.join(tmp_path, sub))
  train, val, aug = (build_source(cfg, s) for s in ("train", "val", "trainaug"))
  assert (len(train), len(val), len(aug)) == (2, 1, 3)
  assert_source_format(aug, 21)
  assert [aug[i]["name"] for i in range(3)] == VOC_SPLITS["trainaug"]
  # SegmentationClass is a palette PNG: the indices are read, 255 borders included.
  np.testing.assert_array_equal(train[0]["label"], voc_label(0))
  np.testing.assert_array_equal(val[0]["label"], voc_label(1))
  assert 255 in train[0]["label"]
  # trainaug reads SegmentationClassAug (shifted by one in this tree).
  np.testing.assert_array_equal(aug[0]["label"],
                                np.where(voc_label(0) == 255, 255, (voc_label(0) + 1) % 21))
  assert aug.class_names[15] == "person"
  np.testing.assert_array_equal(aug.palette[:3], [(0, 0, 0), (128, 0, 0), (0, 128, 0)])


def test_pascal_context_59_and_60(tmp_path):
  raw = write_context(tmp_path)
  s59 = build_source(data_cfg("pascal_context", tmp_path), "train")
  s60 = build_source(data_cfg("pascal_context", tmp_path, context_60=True), "train")
  assert len(s59) == len(s60) == 2 and len(build_source(data_cfg("pascal_context", tmp_path),
                                                        "val")) == 1
  assert_source_format(s59, 59)
  assert_source_format(s60, 60)
  label = raw[s59[0]["name"]]
  np.testing.assert_array_equal(s59[0]["label"], np.where(label == 0, 255, label - 1))
  np.testing.assert_array_equal(s60[0]["label"], label)
  assert s60.class_names[0] == "background" and s59.class_names[0] == "aeroplane"
  assert s59.export_format == "pascal_context_59" and s60.export_format == "pascal_context_60"


# One ignore label everywhere.


def test_ignore_label_in_label_maps_unlabeled_splits_and_padding(tmp_path):
  """config.data.ignore_label=250: every ignored class and unlabeled split of every dataset,
  and the padding of train crops and eval batches, is 250, never 255."""
  write_cityscapes(tmp_path / "cs")
  cfg = lambda name, root, **kw: data_cfg(name, root, ignore_label=250, **kw)
  val = build_source(cfg("cityscapes", tmp_path / "cs"), "val")
  assert_source_format(val, 19, ignore_label=250)
  _, raw = fake_cityscapes.fake_frame(3, 32, 64)
  np.testing.assert_array_equal(val[0]["label"],
                                np.where(classes.CITYSCAPES_ID_MAP[raw] == 255, 250,
                                         classes.CITYSCAPES_ID_MAP[raw]))
  assert 250 in val[0]["label"]
  shutil.rmtree(tmp_path / "cs" / "gtFine" / "test")  # an unlabeled split
  test = build_source(cfg("cityscapes", tmp_path / "cs"), "test")
  assert (test[0]["label"] == 250).all()

  raw_ade = write_ade20k(tmp_path / "ade")
  ade = build_source(cfg("ade20k", tmp_path / "ade", eval_resize=(32, 2048)), "val")
  assert_source_format(ade, 150, ignore_label=250)
  label = raw_ade[ade[0]["name"]][1]
  np.testing.assert_array_equal(ade[0]["label"], np.where(label == 0, 250, label - 1))

  write_voc(tmp_path / "voc")
  voc = build_source(cfg("voc", tmp_path / "voc"), "val")
  np.testing.assert_array_equal(voc[0]["label"],
                                np.where(voc_label(1) == 255, 250, voc_label(1)))
  raw_ctx = write_context(tmp_path / "ctx")
  ctx = build_source(cfg("pascal_context", tmp_path / "ctx"), "train")
  assert_source_format(ctx, 59, ignore_label=250)
  label = raw_ctx[ctx[0]["name"]]
  np.testing.assert_array_equal(ctx[0]["label"], np.where(label == 0, 250, label - 1))

  # Pipelines given the same value pad with it: a 48x80 crop of a 32x64 image at scale 1,
  # and eval batches of ADE20K's two sizes (32x64 and 38x32).
  train = build_source(cfg("cityscapes", tmp_path / "cs"), "train")
  crops = next(iter(pipeline.train_dataset(
      train, batch_size=3, crop_size=(48, 80), scale_range=(1.0, 1.0), flip=False,
      num_threads=0, ignore_label=250)))["label"]
  assert (crops[:, 32:] == 250).all() and (crops[:, :, 64:] == 250).all()
  assert 255 not in crops
  for pad_to in [(0, 0), (40, 64)]:
    batch = next(pipeline.eval_batches(ade, batch_size=2, pad_to=pad_to, ignore_label=250))
    assert batch["label"].shape == ((2, 38, 64) if pad_to == (0, 0) else (2, 40, 64))
    assert (batch["label"][1, :, 32:] == 250).all() and (batch["label"][0, 32:] == 250).all()
    assert 255 not in batch["label"]


def test_ignore_label_must_not_be_a_class(tmp_path):
  write_cityscapes(tmp_path)
  with pytest.raises(ValueError, match=r"config.data.ignore_label=18: expected an int in "
                                       r"19..255 .*Cityscapes's classes"):
    build_source(data_cfg("cityscapes", tmp_path, ignore_label=18), "train")


# Bad input.


# What each real dataset's message names when its root is missing: the files to download.
DOWNLOADS = {
    "cityscapes": "leftImg8bit_trainvaltest.zip",
    "ade20k": "ADEChallengeData2016.zip",
    "voc": "VOCtrainval_11-May-2012.tar",
    "pascal_context": "trainval_merged.json",
    "cityscapes_tfds": "prepare_cityscapes_tfds.sh",
}


# (the folder dataset has no download; tests/test_folder_dataset.py checks its missing root)
@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"synthetic", "folder"}))
def test_missing_root_names_the_path_and_the_download(tmp_path, name):
  root = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError) as e:
    build_source(data_cfg(name, root), "train")
  assert root in str(e.value) and DOWNLOADS[name] in str(e.value) and "\n" not in str(e.value)


def test_unpaired_files_are_listed(tmp_path):
  names = write_cityscapes(tmp_path)
  os.remove(cs_path(tmp_path, "train", names[0], "labelIds"))
  with pytest.raises(datasets.DatasetError, match=f"1 images without labels .*{names[0]}"):
    build_source(data_cfg("cityscapes", tmp_path), "train")
  os.remove(cs_path(tmp_path, "val", names[3], "image"))
  with pytest.raises(datasets.DatasetError, match=f"1 labels without images .*{names[3]}"):
    build_source(data_cfg("cityscapes", tmp_path), "val")
  base = write_voc(tmp_path / "voc")
  os.remove(os.path.join(base, "SegmentationClassAug", "2007_000039.png"))
  with pytest.raises(datasets.DatasetError, match="have no label .*2007_000039"):
    build_source(data_cfg("voc", tmp_path / "voc"), "trainaug")
  os.remove(os.path.join(base, "JPEGImages", "2007_000033.jpg"))
  with pytest.raises(datasets.DatasetError, match="missing from .*2007_000033"):
    build_source(data_cfg("voc", tmp_path / "voc"), "val")
  with pytest.raises(FileNotFoundError, match="aug.txt"):
    os.remove(os.path.join(base, "ImageSets", "Segmentation", "trainaug.txt"))
    build_source(data_cfg("voc", tmp_path / "voc"), "trainaug")


def test_bad_files_are_named_when_read(tmp_path):
  names = write_cityscapes(tmp_path)
  corrupt = cs_path(tmp_path, "train", names[0], "image")
  with open(corrupt, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n not really a png")
  truncated = cs_path(tmp_path, "train", names[1], "labelIds")
  with open(truncated, "rb") as f:
    data = f.read()
  with open(truncated, "wb") as f:
    f.write(data[:len(data) // 2])
  bad_values = cs_path(tmp_path, "train", names[2], "labelIds")
  label = np.full((32, 64), 7, np.uint8)
  label[0, :3] = (34, 40, 200)
  save_png(bad_values, label)
  source = build_source(data_cfg("cityscapes", tmp_path), "train")
  assert len(source) == 3  # nothing is decoded at index time
  with pytest.raises(datasets.DatasetError, match=f"cannot read image {corrupt}"):
    source[0]
  with pytest.raises(datasets.DatasetError, match=f"cannot read label {truncated}"):
    source[1]
  with pytest.raises(datasets.DatasetError,
                     match=f"label {bad_values} has values 34, 40, 200 outside .*0-33, 255"):
    source[2]
  # Size mismatch and an RGB label.
  save_png(cs_path(tmp_path, "val", names[3], "labelIds"), np.full((16, 64), 7, np.uint8))
  save_png(cs_path(tmp_path, "val", names[4], "labelIds"), np.zeros((32, 64, 3), np.uint8))
  val = build_source(data_cfg("cityscapes", tmp_path), "val")
  with pytest.raises(datasets.DatasetError, match=r"is 64x32 but its label .*is 64x16"):
    val[0]
  with pytest.raises(datasets.DatasetError, match="mode RGB"):
    val[1]


def test_out_of_range_values_of_each_dataset(tmp_path):
  write_ade20k(tmp_path)
  path = os.path.join(tmp_path, "ADEChallengeData2016", "annotations", "validation",
                      "ADE_val_00000001.png")
  save_png(path, np.full((32, 64), 151, np.uint8))
  with pytest.raises(datasets.DatasetError, match="values 151 outside ADE20K's 0-150"):
    build_source(data_cfg("ade20k", tmp_path), "val")[0]
  base = write_voc(tmp_path)
  save_png(os.path.join(base, "SegmentationClass", "2007_000033.png"),
           np.full((24, 32), 21, np.uint8), classes.VOC_COLORMAP)
  with pytest.raises(datasets.DatasetError, match="values 21 outside PASCAL VOC's 0-20, 255"):
    build_source(data_cfg("voc", tmp_path), "val")[0]


def test_skip_corrupt_leaves_bad_examples_out_with_a_warning(tmp_path, caplog):
  names = write_cityscapes(tmp_path)
  with open(cs_path(tmp_path, "train", names[1], "image"), "wb") as f:
    f.write(b"garbage")
  source = build_source(data_cfg("cityscapes", tmp_path, skip_corrupt=True), "train")
  assert [source[i]["name"] for i in range(len(source))] == [names[0], names[2]]
  assert "skipped 1 of 3" in caplog.text and names[1] in caplog.text
  for i in range(3):
    with open(cs_path(tmp_path, "train", names[i], "image"), "wb") as f:
      f.write(b"garbage")
  with pytest.raises(datasets.DatasetError, match="every example is unreadable"):
    build_source(data_cfg("cityscapes", tmp_path, skip_corrupt=True), "train")


def test_errors_cross_grain_reader_threads_unchanged(tmp_path):
  names = write_cityscapes(tmp_path)
  with open(cs_path(tmp_path, "train", names[2], "image"), "wb") as f:
    f.write(b"garbage")
  source = build_source(data_cfg("cityscapes", tmp_path), "train")
  ds = pipeline.train_dataset(source, batch_size=3, crop_size=(16, 16), num_threads=2)
  with pytest.raises(datasets.DatasetError, match=f"cannot read image .*{names[2]}"):
    next(iter(ds))


# Export.


def eval_rows(source, batch_size=2):
  """(batch, rows of predictions) for every eval batch; predictions are the ground truth
  (255 -> class 0), padded like the network's output."""
  for batch in pipeline.eval_batches(source, batch_size=batch_size):
    yield batch, np.where(batch["label"] == 255, 0, batch["label"])


def test_cityscapes_export_round_trip(tmp_path):
  write_cityscapes(tmp_path / "cs")
  source = build_source(data_cfg("cityscapes", tmp_path / "cs"), "val")
  exporter = export.Exporter(source, str(tmp_path / "out"))
  for batch, pred in eval_rows(source, batch_size=4):  # 2 valid rows, 2 padding rows
    exporter.write_batch(batch, pred)
  assert exporter.count == 2
  files = sorted(os.listdir(tmp_path / "out" / "submission"))
  assert files == ["frankfurt_000000_000294_leftImg8bit.png",
                   "lindau_000000_000019_leftImg8bit.png"]
  for i, f in enumerate(files):
    written = np.asarray(Image.open(tmp_path / "out" / "submission" / f))
    truth = source[i]["label"]
    assert written.shape == truth.shape and written.dtype == np.uint8
    # labelIds, as cityscapesScripts reads them: back through the labelIds map = prediction.
    np.testing.assert_array_equal(classes.CITYSCAPES_ID_MAP[written], np.where(truth == 255, 0,
                                                                               truth))
    assert set(np.unique(written)) <= set(classes.CITYSCAPES_LABEL_IDS.tolist())
  overlays = sorted(os.listdir(tmp_path / "out" / "overlay"))
  assert overlays == ["frankfurt_000000_000294.jpg", "lindau_000000_000019.jpg"]


def test_ade20k_voc_context_export_formats(tmp_path):
  write_ade20k(tmp_path / "ade")
  ade = build_source(data_cfg("ade20k", tmp_path / "ade", eval_resize=(32, 2048)), "val")
  exporter = export.Exporter(ade, str(tmp_path / "ade_out"))
  for batch, pred in eval_rows(ade):
    exporter.write_batch(batch, pred)
  written = np.asarray(Image.open(tmp_path / "ade_out" / "submission" / "ADE_val_00000002.png"))
  assert written.shape == (48, 40)  # resized back to the original image size
  assert written.min() >= 1 and written.max() <= 150  # class k as k + 1

  write_voc(tmp_path / "voc")
  voc = build_source(data_cfg("voc", tmp_path / "voc"), "val")
  exporter = export.Exporter(voc, str(tmp_path / "voc_out"))
  for batch, pred in eval_rows(voc):
    exporter.write_batch(batch, pred)
  png = Image.open(tmp_path / "voc_out" / "submission" / export.VOC_RESULTS / "2007_000033.png")
  assert png.mode == "P"
  np.testing.assert_array_equal(np.asarray(png), np.where(voc_label(1) == 255, 0, voc_label(1)))
  np.testing.assert_array_equal(np.asarray(png.convert("RGB"))[0, 0],
                                classes.VOC_COLORMAP[np.asarray(png)[0, 0]])

  raw = write_context(tmp_path / "ctx")
  ctx = build_source(data_cfg("pascal_context", tmp_path / "ctx"), "val")
  exporter = export.Exporter(ctx, str(tmp_path / "ctx_out"))
  for batch, pred in eval_rows(ctx):
    exporter.write_batch(batch, pred)
  png = Image.open(tmp_path / "ctx_out" / "submission" / "2008_000007.png")
  label = raw["2008_000007"]
  assert png.mode == "P"
  np.testing.assert_array_equal(np.asarray(png), np.where(label == 0, 1, label))


# End to end through the CLI.


def _cli(workdir, *args):
  cmd = [sys.executable, "-m", "flaseg.main", "--config=configs/fla_cityscapes.py:smoke",
         f"--workdir={workdir}", *args]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_trains_evaluates_exports_and_reports_a_bad_file(tmp_path):
  names = write_cityscapes(tmp_path / "cs")
  small = ("--config.data.name=cityscapes", f"--config.data.root={tmp_path / 'cs'}",
           "--config.model.backbone.depth=18", "--config.eval.mode=whole",
           "--config.eval.scales=(1.0,)", "--config.eval.flip=False",
           "--config.train.log_every=1")
  workdir = tmp_path / "run"
  res = _cli(workdir, *small, "--config.train.steps=2")
  assert res.returncode == 0, res.stderr[-3000:]
  out = tmp_path / "export"
  res = _cli(workdir, *small, "--config.train.steps=2", "--mode=eval",
             f"--config.eval.export_dir={out}")
  assert res.returncode == 0, res.stderr[-3000:]
  with open(workdir / "metrics.jsonl") as f:
    evals = [r for r in map(json.loads, f) if "miou" in r]
  assert len(evals) == 2 and evals[1]["step"] == 2 and len(evals[1]["per_class_iou"]) == 19
  assert evals[0]["miou"] == evals[1]["miou"]
  files = sorted(os.listdir(out / "submission"))
  assert files == ["frankfurt_000000_000294_leftImg8bit.png",
                   "lindau_000000_000019_leftImg8bit.png"]
  for f in files:
    written = np.asarray(Image.open(out / "submission" / f))
    assert written.shape == (32, 64)
    assert set(np.unique(written)) <= set(classes.CITYSCAPES_LABEL_IDS.tolist())
  # Training on: a corrupt image met in grain's reader threads is one line, no traceback.
  bad = cs_path(tmp_path / "cs", "train", names[0], "image")
  with open(bad, "wb") as f:
    f.write(b"garbage")
  res = _cli(workdir, *small, "--config.train.steps=4")
  assert res.returncode == 2
  assert f"flaseg: error: cannot read image {bad}" in res.stderr
  assert "Traceback" not in res.stderr
