"""The evaluator as a plug-in: any predict function, metrics returned (checked against numpy
on the source's own labels), one compile with a fixed padded shape, several splits."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import config_lib, evaluate, parallel, train
from flaseg.models import build_model

K = 4


class Images:
  """A source of `sizes` (H, W) images with labels in 0..K-1 and a few ignored pixels."""

  def __init__(self, sizes, seed=0):
    rng = np.random.default_rng(seed)
    self.examples = []
    for i, (h, w) in enumerate(sizes):
      label = rng.integers(0, K, (h, w)).astype(np.int32)
      label[0, :2] = 255
      image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
      self.examples.append({"image": image, "label": label, "index": i, "name": f"im{i}"})
    self.palette = np.eye(3, dtype=np.uint8)[[0, 1, 2, 0]] * 255

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, i):
    return self.examples[i]


def class_one_where_red(variables, images, out_size):
  """A model-free predictor: class 1 where the red channel is above `variables['t']`, else
  0; at `out_size` (the padded batch's size)."""
  pred = (images[..., 0] > variables["t"]).astype(jnp.int32)
  return pred[:, :out_size[0], :out_size[1]]


def numpy_metrics(source, threshold):
  """mIoU and pixel accuracy of `class_one_where_red` from the unpadded examples."""
  cm = np.zeros((K, K), np.int64)
  for ex in source.examples:
    keep = ex["label"] != 255
    pred = (ex["image"][..., 0] > threshold).astype(np.int64)
    np.add.at(cm, (ex["label"][keep], pred[keep]), 1)
  tp = np.diag(cm)
  union = cm.sum(0) + cm.sum(1) - tp
  iou = tp[union > 0] / union[union > 0]
  return iou.mean(), tp.sum() / cm.sum()


@pytest.mark.parametrize("pad_to", [None, (9, 13)])
def test_any_predict_fn_and_exact_metrics(pad_to):
  """Images of three sizes, batch 8 over 8 devices with padded rows: the metrics equal numpy's
  on the unpadded examples, with per-batch or fixed padding."""
  source = Images([(5, 7), (9, 4), (6, 13)] * 4)
  mesh = parallel.make_mesh()
  ev = evaluate.Evaluator(class_one_where_red, source, mesh, num_classes=K, batch_size=8,
                          pad_to=pad_to)
  got = ev.run({"t": jnp.float32(128)})
  miou, acc = numpy_metrics(source, 128)
  assert got["miou"] == pytest.approx(miou, abs=1e-12)
  assert got["pixel_acc"] == pytest.approx(acc, abs=1e-12)


def test_fixed_padded_shape_compiles_once():
  traces = []

  def counted(variables, images, out_size):
    traces.append(images.shape)
    return class_one_where_red(variables, images, out_size)

  source = Images([(5, 7)] * 8 + [(9, 4), (6, 13)] * 4)  # batches of 5x7 and 9x13
  mesh = parallel.make_mesh()
  kwargs = dict(num_classes=K, batch_size=len(mesh.devices.flat))
  evaluate.Evaluator(counted, source, mesh, **kwargs).run({"t": jnp.float32(100)})
  per_batch = len(traces)
  traces.clear()
  evaluate.Evaluator(counted, source, mesh, pad_to=(9, 13), **kwargs).run(
      {"t": jnp.float32(100)})
  assert per_batch == 2 and traces == [(8, 9, 13, 3)]


def test_sinks_see_every_valid_example_once():
  class Collect:
    def __init__(self):
      self.seen = []

    def write_batch(self, local, pred):
      self.seen += [int(i) for i, v in zip(local["index"], local["valid"]) if v]

  source = Images([(5, 7)] * 11)
  sink = Collect()
  evaluate.Evaluator(class_one_where_red, source, parallel.make_mesh(), num_classes=K,
                     batch_size=8).run({"t": jnp.float32(1)}, sinks=[sink])
  assert sorted(sink.seen) == list(range(11))


def test_several_splits_one_record_each(tmp_path):
  """`config.data.val_split='val,train'`: one metrics record per split, the first split's
  metrics returned; the model's predict function is the config's."""
  config = config_lib.load("configs/quickstart.py:smoke")
  config.data.val_split = "val,train"
  config.model.num_classes = 9
  mesh = parallel.make_mesh()
  model = build_model(config.model)
  sources = {s: train.data.build_source(config.data, s, 0) for s in train.eval_splits(config.data)}
  _, tx, _, _, shape = train.build(config, mesh)
  state = train.create_state(config, model, tx, mesh, shape)
  evaluations = train.make_evaluations(config, model, mesh, sources)
  log = train.MetricsLog(str(tmp_path))
  first = train.run_evaluations(config, evaluations, state, 7, log, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [(r["step"], r["split"]) for r in records] == [(7, "val"), (7, "train")]
  assert records[0]["miou"] == first["miou"]
  assert len(list((tmp_path / "predictions" / "step_7").iterdir())) == config.eval.save_images
