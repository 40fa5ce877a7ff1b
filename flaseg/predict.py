"""Predict on your own images: `python -m flaseg.predict`.

  python -m flaseg.predict --config=configs/fla_folder.py --workdir=runs/mine \
      --input=photos/ --output=predictions/ [--probabilities] [--batch_size=2]
  python -m flaseg.predict --config=configs/fla_cityscapes.py --weights=pretrained/fla \
      --input='shots/*.jpg' --output=out/ --config.eval.mode=slide

The weights are the latest checkpoint of `--workdir` or a file of `python -m flaseg.convert`
(`--weights`); the prediction is the config's evaluation (`config.eval`: whole image, sliding
windows or resize, scales, flip; override any of it with `--config.eval.*`). `--input` is an
image, a folder (every image below it) or a glob. Images may have any size and aspect ratio,
JPEG, PNG, ...; grey, palette, RGBA and CMYK images are converted to RGB. For each image
`<name>` (its path below the input folder, without suffix):

  OUTPUT/labels/<name>.png          palette PNG of class ids, in the dataset's colours
  OUTPUT/overlay/<name>.jpg         the image blended with those colours
  OUTPUT/probabilities/<name>.npy   float32 (H, W, K) class probabilities (--probabilities)

Images of one size are predicted in batches of `--batch_size`; each new size compiles once.
An image whose outputs all exist is skipped, so an interrupted run continues where it
stopped (outputs are written to a temporary name and renamed). An image that cannot be read
is named on one line and skipped; the others go on, and the exit code is 1 with the count at
the end. Bad flags or config values stop with one line (exit 2).
"""
import concurrent.futures
import glob
import os
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging
from ml_collections import config_flags
from PIL import Image

from flaseg import checkpoint, convert, data, evaluate, export
from flaseg.data import datasets
from flaseg.errors import ConfigError, NotFoundError, UserError
from flaseg.models import build_model, init_variables
from flaseg.reporting import Progress

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


# The model and its weights.


class Loaded(NamedTuple):
  model: object
  variables: dict          # {'params': ..., **model_state}
  class_names: tuple
  palette: np.ndarray      # uint8 (K, 3)
  source: str              # where the weights came from


def load_model(config, workdir: str = "", weights: str = "") -> Loaded:
  """The network of `config` with the latest checkpoint of `workdir` or the converted
  `weights`; `config.model.num_classes` = 0 is resolved from the dataset's classes."""
  if bool(workdir) == bool(weights):
    raise ConfigError("give exactly one of --workdir (a training run) and --weights (a file "
                      "of python -m flaseg.convert)")
  class_names, palette = data.class_names_and_palette(config.data)
  if config.model.num_classes == 0:
    with config.unlocked():
      config.model.num_classes = len(class_names)
  model = build_model(config.model)
  shape = (1, *tuple(config.data.crop_size), 3)
  params, state = jax.eval_shape(lambda r: init_variables(model, r, shape), jax.random.key(0))
  if workdir:
    where, restored = restore_variables(workdir, {"params": params, "model_state": state},
                                        int(config.checkpoint.get("restore_step", 0)))
    params, state = restored["params"], restored["model_state"]
  else:
    params, state = convert.merge(params, state, convert.load_converted(weights))
    where = os.path.abspath(weights)
  variables = jax.device_put({"params": params, **state})
  return Loaded(model, variables, tuple(class_names), np.asarray(palette, np.uint8), where)


def restore_variables(workdir: str, abstract: dict, restore_step: int = 0):
  """(checkpoint path, {'params', 'model_state'}) of checkpoint `restore_step` of `workdir`
  (0: the latest; the one `--mode=eval` restores, verified by its checksums), without the
  optimizer state, on the default device."""
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise NotFoundError(f"--workdir={workdir}: no checkpoint in {directory}")
  step = checkpoint.choose_step(directory, restore_step)
  if step is None:
    raise NotFoundError(f"--workdir={workdir}: no checkpoint in {directory}")
  path = os.path.join(directory, str(step))
  checkpoint.check_tree(path, abstract)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                        abstract)
  args = ocp.args.PyTreeRestore(
      target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)  # the optimizer state stays on disk
  mngr = checkpoint.manager(workdir)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(state=args))["state"]
  except Exception as e:  # orbax raises many types; the user needs the path and the cause.
    raise checkpoint.CheckpointError(f"cannot restore checkpoint {path}: "
                                     f"{_one_line(e)[:300]}") from e
  finally:
    mngr.close()
  return path, restored


def make_predict(model, eval_cfg, align_corners: bool, probabilities: bool):
  """jit `predict(variables, uint8 images (B, H, W, 3)) -> (uint8 labels (B, H, W),
  float32 probabilities (B, H, W, K) or None)`: the config's evaluation (evaluate.py)."""
  probs_fn = evaluate.make_probs_fn(model, eval_cfg, align_corners)

  def predict(variables, images):
    probs = probs_fn(variables, images, images.shape[1:3])
    labels = jnp.argmax(probs, -1).astype(jnp.uint8)
    return labels, (probs if probabilities else None)
  return jax.jit(predict)


# Inputs and outputs.


def find_inputs(pattern: str) -> list:
  """[(name, path)] of an image file, of every image below a folder (name: the path below
  it without suffix), or of a glob (name: the file's stem), sorted by name."""
  if os.path.isfile(pattern):
    return [(os.path.splitext(os.path.basename(pattern))[0], pattern)]
  if os.path.isdir(pattern):
    found = []
    for folder, dirnames, files in os.walk(pattern):
      dirnames.sort()
      for f in sorted(files):
        if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES:
          path = os.path.join(folder, f)
          found.append((os.path.splitext(os.path.relpath(path, pattern))[0], path))
    if not found:
      raise NotFoundError(f"--input={pattern}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
  else:
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
      raise NotFoundError(f"--input={pattern}: no such file or folder, and no file matches "
                          "it as a glob")
    found = [(os.path.splitext(os.path.basename(p))[0], p) for p in paths]
  names = {}
  for name, path in found:
    if name in names:
      raise ConfigError(f"--input={pattern}: {names[name]} and {path} would write the same "
                        f"outputs {name}.*; predict them separately")
    names[name] = path
  return sorted(found)


def output_paths(output: str, name: str, probabilities: bool) -> dict:
  paths = {"label": os.path.join(output, "labels", name + ".png"),
           "overlay": os.path.join(output, "overlay", name + ".jpg")}
  if probabilities:
    paths["probabilities"] = os.path.join(output, "probabilities", name + ".npy")
  return paths


def _replace_into(path: str, save) -> None:
  """`save(tmp)` then rename to `path`: an interrupted write never looks finished."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  stem, suffix = os.path.splitext(path)
  tmp = f"{stem}.partial{suffix}"
  save(tmp)
  os.replace(tmp, path)


def write_outputs(paths: dict, image, label, probs, palette) -> None:
  """The label PNG, the overlay and (if in `paths`) the probabilities of one image."""
  _replace_into(paths["label"], lambda p: export.save_png(p, label, palette))
  blend = Image.fromarray(export.overlay(image, label, palette))
  _replace_into(paths["overlay"], lambda p: blend.save(p, quality=90))
  if "probabilities" in paths:
    _replace_into(paths["probabilities"], lambda p: np.save(p, probs))


def image_size(path: str):
  """(H, W) from the file's header (nothing decoded); DatasetError if unreadable."""
  try:
    with Image.open(path) as im:
      return im.size[1], im.size[0]
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
    raise datasets.DatasetError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def batches(items: list, batch_size: int) -> list:
  """`items` [(name, path, size)] grouped by size (in order of first appearance), cut into
  batches of at most `batch_size`."""
  groups = {}
  for item in items:
    groups.setdefault(item[2], []).append(item)
  return [group[i:i + batch_size] for group in groups.values()
          for i in range(0, len(group), batch_size)]


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _bar(done: int, total: int, width: int = 20) -> str:
  filled = int(width * done / max(total, 1))
  return "[" + "#" * filled + "-" * (width - filled) + "] "


def predict_files(config, loaded: Loaded, inputs: list, output: str, *, batch_size: int = 1,
                  probabilities: bool = False, report=print, predict_fn=None) -> dict:
  """Predicts `inputs` [(name, path)] into `output`; returns {'predicted', 'skipped',
  'failed': [(path, reason)]}. Unreadable images are reported through `report` (one line
  each) and left out; reading the next batch and writing the last overlap the model.
  `predict_fn`: a `make_predict` of the same settings, to reuse its compilations."""
  if batch_size < 1:
    raise ConfigError(f"--batch_size={batch_size}: expected at least 1")
  predict = predict_fn or make_predict(loaded.model, config.eval, config.model.align_corners,
                                       probabilities)
  failed, todo, skipped = [], [], 0
  for name, path in inputs:
    paths = output_paths(output, name, probabilities)
    if all(os.path.isfile(p) for p in paths.values()):
      skipped += 1
      continue
    try:
      todo.append((name, path, image_size(path)))
    except datasets.DatasetError as e:
      failed.append((path, str(e)))
      report(f"skipped {path}: {_one_line(e)}")
  work = batches(todo, batch_size)

  def read(batch):
    images, kept = [], []
    for name, path, size in batch:
      try:
        image = datasets.read_image(path)
        if image.shape[:2] != size:  # a header that lies about its size
          raise datasets.DatasetError(f"cannot read image {path}: decoded size "
                                      f"{image.shape[:2]} differs from its header's {size}")
      except datasets.DatasetError as e:
        failed.append((path, str(e)))
        report(f"skipped {path}: {_one_line(e)}")
        continue
      images.append(image)
      kept.append(name)
    return kept, images

  def write(names, images, labels, probs):
    for j, (name, image) in enumerate(zip(names, images)):
      write_outputs(output_paths(output, name, probabilities), image, labels[j],
                    None if probs is None else probs[j], loaded.palette)

  progress = Progress(len(todo), 0, "predict")
  done = predicted = 0
  with concurrent.futures.ThreadPoolExecutor(1) as reader, \
       concurrent.futures.ThreadPoolExecutor(1) as writer:
    pending_read = reader.submit(read, work[0]) if work else None
    pending_write = None
    for b, batch in enumerate(work):
      names, images = pending_read.result()
      pending_read = reader.submit(read, work[b + 1]) if b + 1 < len(work) else None
      if images:
        labels, probs = predict(loaded.variables, np.stack(images))
        labels, probs = jax.device_get((labels, probs))
        if pending_write is not None:
          pending_write.result()
        pending_write = writer.submit(write, names, images, labels, probs)
        predicted += len(images)
      done += len(batch)
      progress.update(done, 1, _bar(done, len(todo)))
    if pending_write is not None:
      pending_write.result()
  return {"predicted": predicted, "skipped": skipped, "failed": failed}


# The command line.

FLAGS = flags.FLAGS


def define_flags():
  """The flags, defined when run as a program (so that importing this module defines none)."""
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/fla_folder.py"
                                  "[:arg].", lock_config=True)
  flags.DEFINE_string("workdir", "", "A training run: its latest checkpoint is used.")
  flags.DEFINE_string("weights", "", "Weights written by python -m flaseg.convert.")
  flags.DEFINE_string("input", None, "An image, a folder of images or a glob ('shots/*.jpg').")
  flags.DEFINE_string("output", None, "Folder for labels/, overlay/ and probabilities/.")
  flags.DEFINE_bool("probabilities", False, "Also write float32 (H, W, K) probabilities (.npy).")
  flags.DEFINE_integer("batch_size", 1, "Images of one size predicted together.")
  flags.mark_flags_as_required(["config", "input", "output"])


def _fail(e: BaseException):
  if os.environ.get("FLASEG_DEBUG"):
    raise e
  print(f"flaseg.predict: error: {_one_line(e)}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  report = lambda line: print(f"flaseg.predict: {line}", file=sys.stderr, flush=True)
  try:
    inputs = find_inputs(FLAGS.input)
    loaded = load_model(FLAGS.config, FLAGS.workdir, FLAGS.weights)
    print(f"predicting {len(inputs)} images with {loaded.source} "
          f"(eval mode {FLAGS.config.eval.mode}) into {os.path.abspath(FLAGS.output)}",
          flush=True)
    result = predict_files(FLAGS.config, loaded, inputs, FLAGS.output,
                           batch_size=FLAGS.batch_size, probabilities=FLAGS.probabilities,
                           report=report)
  except UserError as e:
    _fail(e)
  print(f"predicted {result['predicted']} images, skipped {result['skipped']} whose outputs "
        f"exist, into {os.path.abspath(FLAGS.output)}", flush=True)
  if result["failed"]:
    report(f"{len(result['failed'])} image(s) could not be read and were skipped")
    sys.exit(1)


def _parse_flags(argv):
  for arg in argv[1:]:
    path = arg[len("--config="):].split(":")[0] if arg.startswith("--config=") else None
    if path is not None and not os.path.isfile(path):
      _fail(ConfigError(f"--config: no such config file {path}"))
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
    _fail(e)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=_parse_flags)
