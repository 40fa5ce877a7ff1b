"""The recipe transforms of flaseg.data.transforms against their originals: mmseg 1.2.2's
`PhotoMetricDistortion` and `RandomCrop(cat_max_ratio)` (mmseg's own classes, with their
random draws forced), AttaNet's upsizing `RandomCrop` and `Rotation` (read with PIL as
songqi-github/AttaNet transform.py does), and the recipes that use them."""
import numpy as np
import pytest
from PIL import Image

from flaseg import config_lib
from flaseg.data import pipeline, transforms
from flaseg.errors import ConfigError


@pytest.fixture(scope="module")
def mmseg_transforms():
  """mmseg's transforms module (with mmcv-lite's missing ops stubbed, as the peers do)."""
  pytest.importorskip("cv2")
  pytest.importorskip("mmseg")
  pytest.importorskip("mmcv")
  from reference.torch import mmseg_peers
  from torch_equivalence import import_torch
  mmseg_peers.import_mmseg(import_torch())
  import mmseg.datasets.transforms.transforms as module
  return module


class ForcedRandom:
  """Stands in for numpy.random in mmseg's module: `randint` and `uniform` return the queued
  values in call order (checking the call's range), whatever they are asked."""

  def __init__(self, *values):
    self.values = list(values)

  def _next(self, low, high):
    value = self.values.pop(0)
    assert low <= value <= high, (value, low, high)
    return value

  def randint(self, low, high=None):
    return self._next(0, low - 1) if high is None else self._next(low, high - 1)

  def uniform(self, low, high):
    return self._next(low, high)


def _image(seed=0, shape=(23, 37, 3)):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, shape, dtype=np.uint8)
  image[:3] = 255  # saturated rows: clipping of brightness and contrast
  image[3:6] = 0
  image[6:9] = (200, 30, 30)  # saturated colours: clipping of S, H wrapping around 0 / 180
  return image


# (flaseg's keyword, its value, mmseg's method, the draws mmseg asks for: apply flag, value)
OPS = [("brightness", v, "brightness", (1, v)) for v in (-32.0, -7.3, 1.4, 19.6, 31.99)] + \
      [("contrast", v, "contrast", (1, v)) for v in (0.5, 0.77, 1.13, 1.5)] + \
      [("saturation", v, "saturation", (1, v)) for v in (0.5, 0.81, 1.27, 1.5)] + \
      [("hue", v, "hue", (1, v)) for v in (-18, -5, 1, 17)]


@pytest.mark.parametrize("key,value,method,draws", OPS)
def test_photometric_op_matches_mmseg(mmseg_transforms, monkeypatch, key, value, method, draws):
  """Each operation alone is mmseg's bit for bit (flaseg on RGB, mmseg on BGR)."""
  rgb = _image()
  monkeypatch.setattr(mmseg_transforms, "random", ForcedRandom(*draws))
  theirs = getattr(mmseg_transforms.PhotoMetricDistortion(), method)(rgb[..., ::-1].copy())
  ours = transforms.photometric_distortion(rgb, **{key: value})
  np.testing.assert_array_equal(ours, theirs[..., ::-1])
  assert (ours != rgb).any()


@pytest.mark.parametrize("contrast_first", [True, False])
@pytest.mark.parametrize("apply", [(1, 1, 1, 1), (0, 1, 0, 1), (1, 0, 1, 0)])
def test_photometric_chain_matches_mmseg(mmseg_transforms, monkeypatch, contrast_first, apply):
  """The whole transform, its order and its mode draw (mmseg: mode 1 = contrast first)."""
  rgb = _image(1)
  b, c, s, h = 21.7, 1.31, 0.64, -11
  draws = [apply[0]] + ([b] if apply[0] else []) + [int(contrast_first)]
  contrast = [apply[1]] + ([c] if apply[1] else [])
  draws += contrast if contrast_first else []
  draws += [apply[2]] + ([s] if apply[2] else []) + [apply[3]] + ([h] if apply[3] else [])
  draws += [] if contrast_first else contrast
  monkeypatch.setattr(mmseg_transforms, "random", ForcedRandom(*draws))
  theirs = mmseg_transforms.PhotoMetricDistortion().transform(
      {"img": rgb[..., ::-1].copy()})["img"]
  ours = transforms.photometric_distortion(
      rgb, b if apply[0] else None, c if apply[1] else None, s if apply[2] else None,
      h if apply[3] else None, contrast_first)
  np.testing.assert_array_equal(ours, theirs[..., ::-1])


def test_photometric_random_map_draws():
  """Per example each op is applied about half the time (a constant grey image shows each
  op separately: brightness moves all channels, saturation keeps grey, so only brightness and
  contrast change it); the same rng seed gives the same image."""
  t = transforms.PhotoMetricDistortion()
  grey = {"image": np.full((4, 4, 3), 100, np.uint8)}
  outs = [t.random_map(grey, np.random.default_rng(i))["image"] for i in range(400)]
  changed = np.mean([(o != 100).any() for o in outs])
  assert 0.6 < changed < 0.9  # 1 - P(neither brightness nor contrast) = 3/4
  assert all(np.ptp(o) == 0 for o in outs)  # grey stays grey
  assert max(abs(int(o[0, 0, 0]) - 100) for o in outs) > 40  # contrast up to 1.5
  again = t.random_map(grey, np.random.default_rng(7))["image"]
  np.testing.assert_array_equal(again, outs[7])


def _cat_label():
  """40x40 label: class 0 everywhere but an 18x18 square of class 1 and a band of ignore
  (about 1 crop of 16 in 5 passes mmseg's rule)."""
  label = np.zeros((40, 40), np.uint8)
  label[22:, :18] = 1
  label[:, 36:] = 255
  return label


def _mmseg_rule_ok(crop, ignore=255, ratio=0.75):
  """mmseg's check, read independently: more than one class, none with ratio or more."""
  labels, counts = np.unique(crop, return_counts=True)
  counts = counts[labels != ignore]
  return len(counts) > 1 and counts.max() / counts.sum() < ratio


@pytest.mark.parametrize("seed", range(12))
def test_cat_max_ratio_matches_mmseg(mmseg_transforms, monkeypatch, seed):
  """The crop flaseg keeps is the one mmseg's RandomCrop keeps for the same positions (its
  np.random.randint forced to them), and obeys the rule whenever one of the 10 does."""
  label = _cat_label()
  image = np.repeat(label[..., None], 3, -1)
  t = transforms.RandomScaleCropFlip((16, 16), (1.0, 1.0), flip=False, cat_max_ratio=0.75)
  out = t.random_map({"image": image, "label": label}, np.random.default_rng(seed))

  rng = np.random.default_rng(seed)  # flaseg's draws: scale, offset, (no flip), 10 offsets
  rng.uniform(1.0, 1.0)
  first = rng.random(2)
  offsets = [first] + list(rng.random((10, 2)))
  positions = [int(u * (40 - 16 + 1)) for pair in offsets for u in pair]
  monkeypatch.setattr(np.random, "randint", ForcedRandom(*positions).randint)
  theirs = mmseg_transforms.RandomCrop((16, 16), cat_max_ratio=0.75).transform(
      {"img": image.copy(), "gt_seg_map": label.copy(), "seg_fields": ["gt_seg_map"]})
  np.testing.assert_array_equal(out["label"], theirs["gt_seg_map"])
  np.testing.assert_array_equal(out["image"], theirs["img"])
  crops = [label[y:y + 16, x:x + 16] for y, x in zip(positions[0::2], positions[1::2])]
  if any(_mmseg_rule_ok(c) for c in crops[:10]):
    assert _mmseg_rule_ok(out["label"])


def test_cat_max_ratio_rejects_dominated_crops():
  """Over many seeds, the rule holds far more often with cat_max_ratio than without."""
  label = _cat_label()
  example = {"image": np.repeat(label[..., None], 3, -1), "label": label}
  def ok_rate(ratio):
    t = transforms.RandomScaleCropFlip((16, 16), (1.0, 1.0), cat_max_ratio=ratio)
    return np.mean([_mmseg_rule_ok(t.random_map(example, np.random.default_rng(i))["label"])
                    for i in range(200)])
  assert ok_rate(1.0) < 0.3 and ok_rate(0.75) > 0.85
  with pytest.raises(ConfigError, match="cat_max_ratio"):
    transforms.RandomScaleCropFlip((16, 16), cat_max_ratio=0.0)


def _attanet_upsized(image, label, crop_w, crop_h):
  """AttaNet's transform.py RandomCrop up to its crop position (PIL, (W, H) sizes)."""
  im, lb = Image.fromarray(image), Image.fromarray(label)
  w, h = im.size
  if w < crop_w or h < crop_h:
    scale = float(crop_w) / w if w < h else float(crop_h) / h
    w, h = int(scale * w + 1), int(scale * h + 1)
    im, lb = im.resize((w, h), Image.BILINEAR), lb.resize((w, h), Image.NEAREST)
  return np.asarray(im), np.asarray(lb)


@pytest.mark.parametrize("size", [(20, 30), (30, 20), (12, 50), (31, 31)])
def test_upsize_crop_matches_attanet(size):
  """An image smaller than the square crop is resized up by AttaNet's rule (no padding) and
  the crop is a window of AttaNet's resized image."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
  label = rng.integers(0, 19, size, dtype=np.uint8)
  ref_image, ref_label = _attanet_upsized(image, label, 32, 32)
  assert min(ref_label.shape) >= 32
  t = transforms.RandomScaleCropFlip((32, 32), (1.0, 1.0), flip=False, upsize_crop=True)
  for seed in range(3):
    out = t.random_map({"image": image, "label": label}, np.random.default_rng(seed))
    windows = [(y, x) for y in range(ref_label.shape[0] - 31)
               for x in range(ref_label.shape[1] - 31)
               if np.array_equal(ref_image[y:y + 32, x:x + 32], out["image"])
               and np.array_equal(ref_label[y:y + 32, x:x + 32], out["label"])]
    assert windows, (size, seed)
  padded = transforms.RandomScaleCropFlip((32, 32), (1.0, 1.0), flip=False).random_map(
      {"image": image, "label": label}, np.random.default_rng(0))
  assert (padded["label"] == 255).any()  # the default still pads


def test_rotate90_matches_attanet():
  """rotate90=1: PIL's ROTATE_90 of the image and label (AttaNet's Rotation), after the flip
  when there is one (AttaNet flips, then rotates): never the flip of the rotated image."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
  label = rng.integers(0, 19, (24, 40), dtype=np.uint8)
  def pil(array, *ops):
    im = Image.fromarray(array)
    for op in ops:
      im = im.transpose(op)
    return np.asarray(im)
  rotated = (pil(image, Image.ROTATE_90), pil(label, Image.ROTATE_90))
  flipped = (pil(image, Image.FLIP_LEFT_RIGHT, Image.ROTATE_90),
             pil(label, Image.FLIP_LEFT_RIGHT, Image.ROTATE_90))
  wrong = pil(image, Image.ROTATE_90, Image.FLIP_LEFT_RIGHT)
  t = transforms.RandomScaleCropFlip((40, 24), (1.0, 1.0), flip=True, rotate90=1.0)
  seen = set()
  for seed in range(16):
    out = t.random_map({"image": image, "label": label}, np.random.default_rng(seed))
    assert not np.array_equal(out["image"], wrong)
    for name, (im, lb) in (("rotated", rotated), ("flipped", flipped)):
      if np.array_equal(out["image"], im):
        np.testing.assert_array_equal(out["label"], lb)
        seen.add(name)
  assert seen == {"rotated", "flipped"}
  half = transforms.RandomScaleCropFlip((24, 24), (1.0, 1.0), flip=False, rotate90=0.5)
  square = {"image": image[:, :24], "label": label[:, :24]}
  turned = np.mean([not np.array_equal(half.random_map(square, np.random.default_rng(i))
                                       ["label"], label[:, :24]) for i in range(200)])
  assert 0.35 < turned < 0.65


def test_default_crop_unchanged_by_options():
  """Options off, the crop is the one drawn before the options existed (same draws)."""
  rng = np.random.default_rng(3)
  image = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
  label = rng.integers(0, 19, (30, 50), dtype=np.uint8)
  t = transforms.RandomScaleCropFlip((16, 24), (1.0, 1.0), flip=False)
  out = t.random_map({"image": image, "label": label}, np.random.default_rng(5))
  draws = np.random.default_rng(5)
  draws.uniform(1.0, 1.0)
  oy, ox = draws.random(2)
  y0, x0 = int(oy * (30 - 16 + 1)), int(ox * (50 - 24 + 1))
  np.testing.assert_array_equal(out["label"], label[y0:y0 + 16, x0:x0 + 24])


class SmallSource:
  def __len__(self):
    return 4

  def __getitem__(self, i):
    return {"image": np.full((10, 12, 3), 120, np.uint8), "label": np.full((10, 12), 1, np.uint8)}


def test_mmseg_pipeline_pads_after_photometric():
  """photometric='mmseg': the padding of small crops stays image 0 / label ignore (mmseg pads
  after the distortion); an unknown photometric is a one-line ConfigError."""
  ds = pipeline.train_dataset(SmallSource(), batch_size=4, crop_size=(16, 16),
                              scale_range=(1.0, 1.0), flip=False, photometric="mmseg",
                              cat_max_ratio=0.75, num_threads=0, seed=1)
  batch = next(iter(ds))
  assert batch["image"].shape == (4, 16, 16, 3)
  np.testing.assert_array_equal(batch["image"][:, 10:], 0)
  np.testing.assert_array_equal(batch["image"][:, :, 12:], 0)
  np.testing.assert_array_equal(batch["label"][:, 10:], 255)
  assert (batch["image"][:, :10, :12] != 120).any()  # some distortion happened
  with pytest.raises(ConfigError, match="photometric"):
    pipeline.train_dataset(SmallSource(), batch_size=4, crop_size=(16, 16), photometric="x")


def test_recipes_set_the_transforms():
  base = config_lib.base_config()
  assert (base.data.photometric, base.data.cat_max_ratio) == ("jitter", 1.0)
  assert (base.data.upsize_crop, base.data.rotate90) == (False, 0.0)
  mmseg = config_lib.mmseg_recipe(config_lib.base_config())
  assert (mmseg.data.photometric, mmseg.data.cat_max_ratio) == ("mmseg", 0.75)
  atta = config_lib.attanet_recipe(config_lib.base_config())
  assert (atta.data.upsize_crop, atta.data.rotate90) == (True, 0.5)


def test_resize_rows_matches_torch():
  """Each row's region resized to its own size: torch's bilinear (align_corners False/True)."""
  torch = pytest.importorskip("torch")
  from flaseg import inference
  x = np.random.default_rng(0).normal(size=(2, 9, 12, 3)).astype(np.float32)
  sizes, out_sizes = np.array([[9, 12], [5, 7]]), np.array([[13, 17], [11, 6]])
  for align in (False, True):
    out = np.asarray(inference.resize_rows(x, sizes, (14, 18), out_sizes, align))
    for b in range(2):
      (h, w), (oh, ow) = sizes[b], out_sizes[b]
      ref = torch.nn.functional.interpolate(
          torch.from_numpy(x[b:b + 1, :h, :w]).permute(0, 3, 1, 2), size=(int(oh), int(ow)),
          mode="bilinear", align_corners=align).permute(0, 2, 3, 1).numpy()[0]
      np.testing.assert_allclose(out[b, :oh, :ow], ref, atol=1e-5)


class ResizedSource:
  """Examples resized for eval, as datasets.Source does: label, image (channel 0 = the
  class) and their originals."""

  def __init__(self):
    rng = np.random.default_rng(1)
    self.items = []
    for (h, w), (rh, rw) in (((20, 30), (10, 15)), ((17, 13), (9, 7))):
      original = np.kron(rng.integers(0, 3, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4)))
      original = original[:h, :w].astype(np.uint8)
      label = np.asarray(Image.fromarray(original).resize((rw, rh), Image.NEAREST))
      self.items.append({"image": np.repeat(label[..., None], 3, -1), "label": label,
                         "original_label": original, "original_size": (h, w)})

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    return self.items[i]


class ClassModel:
  """A 'model' whose logits are 10x the one-hot of the image's channel 0 (the class)."""

  def apply(self, variables, x, train):
    import jax
    return {"out": 10.0 * jax.nn.one_hot(x[..., 0].astype(np.int32), 3)}


def test_original_labels_scored_as_mmseg():
  """eval.original_labels: the confusion matrix is the one of each prediction resized back
  (bilinear softmax, torch) to its original label, not the resized label's."""
  torch = pytest.importorskip("torch")
  import ml_collections
  from flaseg import evaluate, metrics, parallel
  source = ResizedSource()
  mesh = parallel.make_mesh()
  cfg = ml_collections.ConfigDict(dict(mode="whole", scales=(1.0,), flip=False,
                                       crop_size=(8, 8), stride=(8, 8)))
  predict = evaluate.make_predict_fn(ClassModel(), cfg, align_corners=False)
  cm = np.zeros((3, 3), np.int64)
  for ex in source.items:
    logits = 10.0 * np.eye(3, dtype=np.float32)[ex["label"]]
    probs = torch.softmax(torch.from_numpy(logits), -1).permute(2, 0, 1)[None]
    up = torch.nn.functional.interpolate(probs, size=ex["original_size"], mode="bilinear",
                                         align_corners=False)[0].argmax(0).numpy()
    np.add.at(cm, (ex["original_label"].ravel(), up.ravel()), 1)
  ref = metrics.segmentation_metrics(cm)
  got = evaluate.Evaluator(predict, source, mesh, num_classes=3, batch_size=mesh.devices.size,
                           original_labels=True).run({})
  np.testing.assert_allclose(got["miou"], ref["miou"], rtol=1e-6)
  resized = evaluate.Evaluator(predict, source, mesh, num_classes=3,
                               batch_size=mesh.devices.size).run({})
  assert resized["miou"] == 1.0 and got["miou"] < 1.0  # the resize back costs accuracy
