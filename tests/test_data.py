"""Tests of flaseg.data: the synthetic dataset, transforms and input pipelines."""
import numpy as np
import pytest

from flaseg.data import pipeline
from flaseg.data import transforms
from flaseg.data.synthetic import SyntheticScenes


class IndexSource:
  """Example i is a constant image and label equal to i (sizes cycle through `sizes`), so
  a (non-padded) pixel of any crop tells which example it came from."""

  def __init__(self, n, sizes=((32, 40),)):
    self.n, self.sizes = n, sizes

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    h, w = self.sizes[i % len(self.sizes)]
    return {"image": np.full((h, w, 3), i, np.uint8), "label": np.full((h, w), i, np.uint8),
            "name": f"ex{i}"}


def blocky_example(rng, height, width, block, num_classes):
  """A label of constant `block` x `block` squares and an image that is its palette."""
  small = rng.integers(0, num_classes, (height // block, width // block), dtype=np.uint8)
  label = np.kron(small, np.ones((block, block), np.uint8))
  return {"image": SyntheticScenes.palette[label], "label": label, "name": "blocks"}


def thin_vertical_columns(mask, max_width=3, min_height=8):
  """Whether `mask` has a column of >= `min_height` pixels whose horizontal runs all have
  width <= `max_width`."""
  wide = np.zeros_like(mask)
  for x in range(mask.shape[1] - max_width):  # Mark every run of max_width + 1 pixels.
    window = mask[:, x:x + max_width + 1].all(axis=1)
    wide[:, x:x + max_width + 1] |= window[:, None]
  thin = mask & ~wide
  for column in thin.T:
    run = 0
    for v in column:
      run = run + 1 if v else 0
      if run >= min_height:
        return True
  return False


# Synthetic dataset.


def test_synthetic_example_format():
  ds = SyntheticScenes("train", num_examples=10, height=64, width=80)
  assert len(ds) == 10
  ex = ds[3]
  assert ex["image"].shape == (64, 80, 3) and ex["image"].dtype == np.uint8
  assert ex["label"].shape == (64, 80) and ex["label"].dtype == np.uint8
  assert ex["name"] == "synthetic_train_000003"
  assert ds.num_classes >= 8 and len(ds.class_names) == ds.num_classes
  assert ds.palette.shape == (ds.num_classes, 3) and ds.palette.dtype == np.uint8
  assert ds.ignore_label == 255
  with pytest.raises(IndexError):
    ds[10]
  np.testing.assert_array_equal(ds[-1]["image"], ds[9]["image"])


def test_synthetic_is_deterministic():
  a, b = SyntheticScenes(seed=0), SyntheticScenes(seed=0)
  for i in (0, 7):
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    np.testing.assert_array_equal(a[i]["label"], b[i]["label"])
  other = SyntheticScenes(seed=1)
  assert not np.array_equal(a[0]["image"], other[0]["image"])
  assert not np.array_equal(a[0]["image"], a[1]["image"])


def test_synthetic_splits_are_disjoint():
  train, val = SyntheticScenes("train"), SyntheticScenes("val")
  train_images = {train[i]["image"].tobytes() for i in range(12)}
  val_images = {val[i]["image"].tobytes() for i in range(12)}
  assert len(train_images) == len(val_images) == 12
  assert not train_images & val_images
  with pytest.raises(ValueError):
    SyntheticScenes("nope")


def test_synthetic_classes_and_thin_structures():
  ds = SyntheticScenes("train")
  counts = np.zeros(256, np.int64)
  thin = False
  for i in range(20):
    label = ds[i]["label"]
    counts += np.bincount(label.ravel(), minlength=256)
    thin = thin or thin_vertical_columns(label == ds.class_names.index("pole"))
  assert (counts[:ds.num_classes] > 0).all(), counts[:ds.num_classes]
  assert counts[ds.num_classes:255].sum() == 0
  assert counts[255] <= 0.01 * counts.sum()
  assert thin


def test_synthetic_ignore_label():
  assert SyntheticScenes(ignore_label=250).ignore_label == 250
  with pytest.raises(ValueError, match="ignore_label=3: expected an int in 9..255"):
    SyntheticScenes(ignore_label=3)


# Transforms.


def test_scale_crop_flip_keeps_alignment_at_scale_one():
  ex = blocky_example(np.random.default_rng(0), 64, 96, 1, SyntheticScenes.num_classes)
  t = transforms.RandomScaleCropFlip((40, 56), scale_range=(1.0, 1.0))
  for seed in range(10):
    out = t.random_map(ex, np.random.default_rng(seed))
    assert out["image"].shape == (40, 56, 3) and out["label"].shape == (40, 56)
    assert out["image"].dtype == np.uint8 and out["label"].dtype == np.uint8
    assert out["name"] == "blocks"
    np.testing.assert_array_equal(out["image"], SyntheticScenes.palette[out["label"]])


@pytest.mark.parametrize("scale", [2.0, 1.37, 0.75, 0.5])
def test_scale_crop_flip_keeps_alignment_when_resizing(scale):
  ex = blocky_example(np.random.default_rng(1), 64, 96, 8, SyntheticScenes.num_classes)
  t = transforms.RandomScaleCropFlip((48, 80), scale_range=(scale, scale))
  for seed in range(5):
    out = t.random_map(ex, np.random.default_rng(seed))
    assert out["image"].shape == (48, 80, 3) and out["label"].shape == (48, 80)
    label, image = out["label"], out["image"].astype(int)
    valid = label != 255
    expected = SyntheticScenes.palette[np.where(valid, label, 0)].astype(int)
    agree = (np.abs(image - expected).max(-1) <= 2) & valid
    assert agree.sum() > 0.3 * valid.sum()
    # Where the label is constant over a 3x3 window, bilinear (image) and nearest (label)
    # resizing agree exactly; a misalignment by one pixel would break this at every edge.
    interior = np.zeros_like(valid)
    centre = label[1:-1, 1:-1]
    interior[1:-1, 1:-1] = valid[1:-1, 1:-1]
    for dy in range(3):
      for dx in range(3):
        interior[1:-1, 1:-1] &= label[dy:dy + 46, dx:dx + 78] == centre
    assert interior.sum() > 0.2 * valid.sum()
    assert agree[interior].all()


def test_scale_crop_flip_flips_image_and_label_together():
  ex = blocky_example(np.random.default_rng(2), 32, 48, 1, SyntheticScenes.num_classes)
  t = transforms.RandomScaleCropFlip((32, 48), scale_range=(1.0, 1.0))
  flips = []
  for seed in range(20):
    out = t.random_map(ex, np.random.default_rng(seed))
    flipped = np.array_equal(out["label"], ex["label"][:, ::-1])
    assert flipped or np.array_equal(out["label"], ex["label"])
    expected = ex["image"][:, ::-1] if flipped else ex["image"]
    np.testing.assert_array_equal(out["image"], expected)
    flips.append(flipped)
  assert any(flips) and not all(flips)
  no_flip = transforms.RandomScaleCropFlip((32, 48), scale_range=(1.0, 1.0), flip=False)
  for seed in range(5):
    out = no_flip.random_map(ex, np.random.default_rng(seed))
    np.testing.assert_array_equal(out["label"], ex["label"])


@pytest.mark.parametrize("ignore_label", [None, 250])
def test_scale_crop_flip_pads_with_zero_and_ignore(ignore_label):
  ex = {"image": np.full((20, 30, 3), 7, np.uint8), "label": np.full((20, 30), 3, np.uint8)}
  kwargs = {} if ignore_label is None else {"ignore_label": ignore_label}
  t = transforms.RandomScaleCropFlip((32, 48), scale_range=(1.0, 1.0), flip=False, **kwargs)
  out = t.random_map(ex, np.random.default_rng(0))
  pad = 255 if ignore_label is None else ignore_label
  assert out["image"].shape == (32, 48, 3) and out["label"].shape == (32, 48)
  assert (out["image"][:20, :30] == 7).all() and (out["label"][:20, :30] == 3).all()
  assert (out["image"][20:] == 0).all() and (out["image"][:, 30:] == 0).all()
  assert (out["label"][20:] == pad).all() and (out["label"][:, 30:] == pad).all()
  with pytest.raises(ValueError, match="ignore_label=256"):
    transforms.RandomScaleCropFlip((32, 48), ignore_label=256)


def test_scale_crop_flip_crop_sizes_and_determinism():
  ex = SyntheticScenes()[0]
  t = transforms.RandomScaleCropFlip((48, 80), scale_range=(0.5, 2.0))
  for seed in range(10):
    out = t.random_map(ex, np.random.default_rng(seed))
    assert out["image"].shape == (48, 80, 3) and out["label"].shape == (48, 80)
    again = t.random_map(ex, np.random.default_rng(seed))
    np.testing.assert_array_equal(out["image"], again["image"])
    np.testing.assert_array_equal(out["label"], again["label"])
  assert set(np.unique(out["label"])) <= set(range(SyntheticScenes.num_classes)) | {255}


def test_color_jitter():
  ex = SyntheticScenes()[0]
  out = transforms.ColorJitter(0.0, 0.0, 0.0).random_map(ex, np.random.default_rng(0))
  np.testing.assert_array_equal(out["image"], ex["image"])
  jitter = transforms.ColorJitter(0.4, 0.4, 0.4)
  out = jitter.random_map(ex, np.random.default_rng(0))
  assert out["image"].dtype == np.uint8 and out["image"].shape == ex["image"].shape
  assert not np.array_equal(out["image"], ex["image"])
  assert out["label"] is ex["label"] and out["name"] == ex["name"]
  again = jitter.random_map(ex, np.random.default_rng(0))
  np.testing.assert_array_equal(out["image"], again["image"])
  # Grey images stay grey; brightness alone scales every pixel by the same factor.
  grey = jitter.random_map({"image": np.repeat(ex["image"][..., :1], 3, -1)},
                           np.random.default_rng(1))["image"]
  assert (grey == grey[..., :1]).all()
  flat = {"image": np.full((4, 4, 3), 100, np.uint8)}
  for seed in range(5):
    out = transforms.ColorJitter(0.5, 0.0, 0.0).random_map(flat, np.random.default_rng(seed))
    assert (out["image"] == out["image"][0, 0, 0]).all()
    assert 50 <= out["image"][0, 0, 0] <= 150


# Train pipeline.


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_train_batches_format_and_determinism():
  source = SyntheticScenes(num_examples=16)
  make = lambda: pipeline.train_dataset(source, batch_size=4, crop_size=(48, 64), seed=3)
  batches = take(iter(make()), 2)
  b = batches[0]
  assert set(b) == {"image", "label"}
  assert b["image"].shape == (4, 48, 64, 3) and b["image"].dtype == np.uint8
  assert b["label"].shape == (4, 48, 64) and b["label"].dtype == np.int32
  assert_batches_equal(batches, take(iter(make()), 2))
  other = take(iter(pipeline.train_dataset(source, batch_size=4, crop_size=(48, 64), seed=4)), 1)
  assert not np.array_equal(other[0]["image"], b["image"])


def test_train_iterator_resumes_exactly():
  source = SyntheticScenes(num_examples=12)
  make = lambda: pipeline.train_dataset(source, batch_size=4, crop_size=(48, 64), seed=0)
  it = iter(make())
  take(it, 3)
  state = it.get_state()
  expected = take(it, 2)
  restored = iter(make())
  restored.set_state(state)
  assert_batches_equal(take(restored, 2), expected)


def test_train_epochs_are_reshuffled_permutations():
  source = IndexSource(16)
  ds = pipeline.train_dataset(source, batch_size=4, crop_size=(16, 16), scale_range=(1, 1),
                              color_jitter=0.0)
  ids = [b["label"][:, 0, 0] for b in take(iter(ds), 12)]  # 3 epochs of 16 examples.
  epochs = np.concatenate(ids).reshape(3, 16)
  for epoch in epochs:
    assert sorted(epoch) == list(range(16))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[0], np.arange(16))


def test_train_process_shards_are_disjoint():
  source = IndexSource(24)
  seen = []
  for p in range(2):
    ds = pipeline.train_dataset(source, batch_size=4, crop_size=(16, 16), scale_range=(1, 1),
                                color_jitter=0.0, process_index=p, process_count=2)
    seen.append(np.concatenate([b["label"][:, 0, 0] for b in take(iter(ds), 3)]))
  assert len(set(seen[0])) == len(set(seen[1])) == 12
  assert set(seen[0]).isdisjoint(seen[1])
  assert set(seen[0]) | set(seen[1]) == set(range(24))


@pytest.mark.parametrize("ignore_label", [None, 250])
def test_train_crops_are_padded_with_the_ignore_label(ignore_label):
  source = IndexSource(4, sizes=((10, 12),))  # smaller than the crop
  kwargs = {} if ignore_label is None else {"ignore_label": ignore_label}
  ds = pipeline.train_dataset(source, batch_size=4, crop_size=(16, 16), scale_range=(1, 1),
                              flip=False, color_jitter=0.0, num_threads=0, **kwargs)
  labels = next(iter(ds))["label"]
  pad = 255 if ignore_label is None else ignore_label
  assert (labels[:, 10:] == pad).all() and (labels[:, :, 12:] == pad).all()
  assert set(np.unique(labels)) == {0, 1, 2, 3, pad}


def test_train_global_batch_does_not_depend_on_process_count():
  source = SyntheticScenes(num_examples=16)
  kwargs = dict(crop_size=(32, 48), seed=5, num_threads=0)
  whole = next(iter(pipeline.train_dataset(source, batch_size=4, **kwargs)))
  for p in range(2):
    part = next(iter(pipeline.train_dataset(source, batch_size=2, process_index=p,
                                            process_count=2, **kwargs)))
    for k in part:
      np.testing.assert_array_equal(part[k], whole[k][2 * p:2 * p + 2])


# Eval batches.


def test_eval_batches_pad_and_cover_every_example():
  source = IndexSource(10, sizes=((20, 30), (24, 26)))
  batch_size, process_count = 3, 3
  num_batches = pipeline.num_eval_batches(len(source), batch_size, process_count)
  assert num_batches == 2
  seen = []
  for p in range(process_count):
    batches = list(pipeline.eval_batches(source, batch_size=batch_size, process_index=p,
                                          process_count=process_count))
    assert len(batches) == num_batches
    for b in batches:
      assert b["image"].dtype == np.uint8 and b["label"].dtype == np.int32
      assert b["valid"].dtype == bool and b["index"].dtype == np.int32
      assert b["image"].shape[0] == b["label"].shape[0] == len(b["valid"]) == batch_size
      for k in range(batch_size):
        i = b["index"][k]
        if not b["valid"][k]:
          assert i == -1 and (b["label"][k] == 255).all() and (b["image"][k] == 0).all()
          continue
        seen.append(i)
        h, w = source[i]["label"].shape
        assert (b["label"][k, :h, :w] == i).all() and (b["image"][k, :h, :w] == i).all()
        assert (b["label"][k, h:] == 255).all() and (b["label"][k, :, w:] == 255).all()
        assert (b["image"][k, h:] == 0).all() and (b["image"][k, :, w:] == 0).all()
  assert sorted(seen) == list(range(10))


def test_eval_batches_pad_to_fixed_size():
  source = IndexSource(5, sizes=((20, 30), (24, 26)))
  # Two processes: every batch of both, the blank last one of process 1 included, is 32x32.
  for p in range(2):
    batches = list(pipeline.eval_batches(source, batch_size=2, pad_to=(32, 32),
                                         ignore_label=250, process_index=p, process_count=2))
    assert len(batches) == 2
    for b in batches:
      assert b["image"].shape == (2, 32, 32, 3) and b["label"].shape == (2, 32, 32)
      for k in range(2):
        i = b["index"][k]
        h, w = source[i]["label"].shape if b["valid"][k] else (0, 0)
        assert (b["label"][k, h:] == 250).all() and (b["label"][k, :, w:] == 250).all()
        assert (b["label"][k, :h, :w] == i).all() and (b["image"][k, h:] == 0).all()
  assert not batches[-1]["valid"].any()
  # (0, 0) and None: each batch padded to its largest image.
  for pad_to in [(0, 0), None]:
    shapes = [b["label"].shape for b in pipeline.eval_batches(source, batch_size=2,
                                                             pad_to=pad_to)]
    assert shapes == [(2, 24, 30), (2, 24, 30), (2, 20, 30)]
  b = next(pipeline.eval_batches(SyntheticScenes("val", num_examples=5), batch_size=4))
  assert b["image"].shape == (4, 96, 128, 3) and b["valid"].all()
  np.testing.assert_array_equal(b["index"], np.arange(4))


def test_eval_batches_image_larger_than_pad_to_is_named():
  source = IndexSource(3, sizes=((20, 30), (24, 26)))
  with pytest.raises(ValueError) as e:
    list(pipeline.eval_batches(source, batch_size=2, pad_to=(22, 30)))
  assert str(e.value) == ("eval image 1 (ex1) is 24x26 (HxW), larger than pad_to=(22, 30) "
                          "(config.eval.pad_to)")
  with pytest.raises(ValueError, match=r"pad_to=\(0, 30\): expected \(H, W\) > 0"):
    next(pipeline.eval_batches(source, batch_size=2, pad_to=(0, 30)))
