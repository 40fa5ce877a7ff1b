"""python -m flaseg.predict on a folder of mixed images (sizes, formats, corrupt files), the
README's walk-through; TensorBoard events of the training run read back from the files."""
import io
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image

import own_data
from flaseg import config_lib, parallel, predict, tensorboard, train
from flaseg.reporting import MetricsLog


def test_batches_group_equal_sizes_in_order():
  items = [("a", "a", (4, 5)), ("b", "b", (3, 3)), ("c", "c", (4, 5)), ("d", "d", (4, 5)),
           ("e", "e", (3, 3))]
  assert [[n for n, _, _ in b] for b in predict.batches(items, 2)] == [
      ["a", "c"], ["d"], ["b", "e"]]
  assert len(predict.batches(items, 1)) == 5


def test_find_inputs_file_folder_glob(tmp_path):
  for rel in ("x.jpg", "sub/y.PNG", "notes.txt", "sub/z.png"):
    os.makedirs(os.path.dirname(tmp_path / rel), exist_ok=True)
    (tmp_path / rel).write_bytes(b"")
  assert [n for n, _ in predict.find_inputs(str(tmp_path))] == ["sub/y", "sub/z", "x"]
  assert [n for n, _ in predict.find_inputs(str(tmp_path / "sub" / "*.png"))] == ["z"]
  assert predict.find_inputs(str(tmp_path / "x.jpg")) == [("x", str(tmp_path / "x.jpg"))]
  (tmp_path / "z.png").write_bytes(b"")
  with pytest.raises(predict.ConfigError, match="would write the same outputs z"):
    predict.find_inputs(str(tmp_path / "**" / "z.png"))
  with pytest.raises(predict.NotFoundError, match="no file matches"):
    predict.find_inputs(str(tmp_path / "nothing*"))


def _reference_labels(own_data_run, images):
  """Argmax of the model's 'out' logits, the checkpoint restored by the trainer's own path."""
  config = config_lib.load("configs/fla_folder.py:smoke")
  config.data.root = own_data_run["data"]
  config.model.num_classes = 3
  model, state, _ = train.restore_latest(config, own_data_run["workdir"], parallel.make_mesh())
  variables = {"params": state.params, **state.model_state}
  return {name: np.argmax(np.asarray(model.apply(variables, image[None])["out"][0]), -1)
          for name, image in images.items()}


@pytest.mark.slow
def test_predict_on_a_folder_then_continue(own_data_run, monkeypatch):
  base = own_data_run["base"]
  monkeypatch.chdir(own_data.REPO)
  result = own_data.run(own_data.PREDICT, base)
  # two unreadable files: each named on one line, the rest predicted, exit 1 with the count
  assert result.returncode == 1, result.stderr[-3000:]
  err = result.stderr.splitlines()
  for bad in ("notes.jpg", "cut.png"):
    assert len([line for line in err if line.startswith("flaseg.predict: skipped ")
                and bad in line]) == 1, result.stderr
  assert "flaseg.predict: 2 image(s) could not be read and were skipped" in err
  assert "Traceback" not in result.stderr
  assert "predicted 6 images, skipped 0" in result.stdout
  assert "ETA" in result.stdout
  out = os.path.join(base, "predictions")
  palette = np.array(own_data.COLORS, np.uint8)
  images = {name: np.asarray(Image.open(path).convert("RGB"))
            for name, path in own_data_run["photos"].items()}
  reference = _reference_labels(own_data_run, images)
  for name, image in images.items():
    with Image.open(os.path.join(out, "labels", name + ".png")) as im:
      assert im.mode == "P"
      np.testing.assert_array_equal(np.asarray(im.getpalette()[:9]).reshape(3, 3), palette)
      label = np.asarray(im)
    assert label.shape == image.shape[:2]
    np.testing.assert_array_equal(label, reference[name])
    overlay = np.asarray(Image.open(os.path.join(out, "overlay", name + ".jpg")))
    expected = 0.5 * image + 0.5 * palette[label].astype(np.float64)
    other = 0.5 * image + 0.5 * palette[(label + 1) % 3].astype(np.float64)
    # JPEG (chroma subsampling of noisy images): far closer to this blend than to another
    assert np.abs(overlay - expected).mean() < 0.5 * np.abs(overlay - other).mean()
    probs = np.load(os.path.join(out, "probabilities", name + ".npy"))
    assert probs.shape == (*image.shape[:2], 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(-1), label)

  # an interrupted run continues: only the image whose output is missing is predicted
  os.remove(os.path.join(out, "overlay", "grey.jpg"))
  kept = os.path.getmtime(os.path.join(out, "labels", "street_a.png"))
  result = own_data.run(own_data.PREDICT, base)
  assert result.returncode == 1
  assert "predicted 1 images, skipped 5 whose outputs exist" in result.stdout
  assert os.path.getmtime(os.path.join(out, "labels", "street_a.png")) == kept
  assert os.path.isfile(os.path.join(out, "overlay", "grey.jpg"))
  assert not [f for _, _, files in os.walk(out) for f in files if ".partial" in f]


def read_events(folder):
  """(tag, step, value or PNG bytes) of every summary in the TFRecord event files of
  `folder`, read without TensorFlow: each record is a little-endian uint64 length, its
  masked CRC, the bytes of an `Event` proto and their masked CRC."""
  from tensorboardX.proto import event_pb2
  out = []
  for name in sorted(os.listdir(folder)):
    if not name.startswith("events.out.tfevents"):
      continue
    with open(os.path.join(folder, name), "rb") as f:
      blob = f.read()
    pos = 0
    while pos < len(blob):
      (length,) = struct.unpack("<Q", blob[pos:pos + 8])
      event = event_pb2.Event.FromString(blob[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for value in event.summary.value:
        kind = value.WhichOneof("value")
        out.append((value.tag, event.step, value.simple_value if kind == "simple_value"
                    else value.image.encoded_image_string))
  return out


@pytest.mark.slow
def test_tensorboard_events_hold_the_logged_scalars_and_images(own_data_run):
  workdir = own_data_run["workdir"]
  events = read_events(os.path.join(workdir, "tensorboard"))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  scalars = {(tag, step): v for tag, step, v in events if isinstance(v, float)}
  train_records = [r for r in records if "loss" in r]
  assert train_records
  for r in train_records:
    for key in ("loss", "lr", "img_per_s", "loss_out", "loss_aux1"):
      assert scalars[(f"train/{key}", r["step"])] == pytest.approx(r[key], rel=1e-6)
  (ev,) = [r for r in records if "miou" in r]
  assert scalars[("val/miou", ev["step"])] == pytest.approx(ev["miou"], rel=1e-6)
  assert scalars[("val/pixel_acc", ev["step"])] == pytest.approx(ev["pixel_acc"], rel=1e-6)
  for name, iou in zip(own_data.CLASSES, ev["per_class_iou"]):
    if iou is not None and np.isfinite(iou):
      assert scalars[(f"val/iou/{name}", ev["step"])] == pytest.approx(iou, rel=1e-6)
  images = {tag: png for tag, step, png in events if isinstance(png, bytes)}
  assert sorted(images) == ["predictions/0", "predictions/1"]  # :smoke saves 2
  panel = np.asarray(Image.open(io.BytesIO(images["predictions/0"])))
  assert panel.shape == (*own_data.SIZE[:1], 3 * own_data.SIZE[1], 3)


def test_tensorboard_is_optional(tmp_path, monkeypatch):
  config = config_lib.base_config()
  monkeypatch.setitem(__import__("sys").modules, "tensorboardX", None)  # not installed
  log = tensorboard.metrics_log(config, str(tmp_path))
  assert type(log) is MetricsLog
  log.write({"step": 1, "loss": 1.0})
  assert not os.path.exists(tmp_path / "tensorboard")
  config.train.tensorboard = False
  assert type(tensorboard.metrics_log(config, str(tmp_path))) is MetricsLog


def test_readme_shows_the_tested_commands():
  with open(os.path.join(own_data.REPO, "README.md")) as f:
    readme = " ".join(f.read().replace("\\\n", " ").split())
  for command in (own_data.TRAIN, own_data.PREDICT, own_data.EXPORT, own_data.EXPORT_ONNX):
    assert command in readme, command
