"""A deployable model: `python -m flaseg.export_model`.

  python -m flaseg.export_model --config=configs/fla_folder.py --workdir=runs/mine \
      --output=mine.jax --size=512x512 [--platforms=cpu,cuda]

writes `mine.jax`, a serialized `jax.export.Exported` of the config's inference (its
evaluation: whole image, sliding windows or resize, scales, flip) with the weights baked in:

  uint8 images (B, H, W, 3) RGB  ->  (int32 labels (B, H, W), float32 probabilities (B, H, W, K))

B is symbolic (any batch size). H and W are fixed by `--size` (default: try symbolic ones),
because every network resizes its logits to the image with `resize_bilinear`, whose weights
are computed in numpy from concrete sizes (and the sliding-window grid too): jax.export
stops with a ConcretizationTypeError on symbolic sizes, reported in one line. Beside it,
`mine.jax.json` holds the class names, palette, input shape and where the weights came from.
Reloading needs jax and numpy only, no flaseg:

  exported = jax.export.deserialize(open("mine.jax", "rb").read())
  labels, probs = exported.call(images)          # images: uint8 (B, H, W, 3)

`--format=onnx` writes an ONNX model instead (through jax2onnx, `bash scripts/install_onnx.sh`)
of the same signature, B symbolic, H and W fixed, with one deviation: it holds the network's
whole-image, single-scale forward (resize of the logits to the image, softmax, argmax), not
the config's sliding windows, scales or flip, which multiply the graph (jax2onnx's graph
optimiser slows down faster than the graph grows: FLANet's 6 scales x 2 flips at :smoke did
not convert in 10 minutes) and which an ONNX runtime's caller can do itself.
Convolutions are `lax.conv_general_dilated` and attention the plain einsum form, unchunked
(`onnx_config`). Which networks convert is in README "Your own images and data".
"""
import json
import logging as py_logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from jax import export
from ml_collections import config_flags

from flaseg import evaluate, predict
from flaseg.errors import ConfigError, UserError
from flaseg.models import build_model
from flaseg.models.lowering import check_platforms


def parse_size(size: str):
  """'512x1024' -> (512, 1024); '' -> None (symbolic)."""
  if not size:
    return None
  try:
    h, w = (int(v) for v in size.lower().split("x"))
  except ValueError:
    raise ConfigError(f"--size={size!r}: expected HxW, e.g. 512x1024") from None
  if h <= 0 or w <= 0:
    raise ConfigError(f"--size={size!r}: height and width must be positive")
  return h, w


def inference_fn(loaded: predict.Loaded, config):
  """`f(uint8 images) -> (int32 labels, float32 probabilities)` of the config's evaluation,
  the weights closed over (so that export bakes them in as constants)."""
  probs_fn = evaluate.make_probs_fn(loaded.model, config.eval, config.model.align_corners)
  variables = jax.tree.map(np.asarray, loaded.variables)

  def infer(images):
    probs = probs_fn(variables, images, images.shape[1:3])
    return jnp.argmax(probs, -1).astype(jnp.int32), probs
  return infer


def export_inference(loaded: predict.Loaded, config, size=None, platforms=None):
  """The `jax.export.Exported` of `inference_fn` for uint8 (B, H, W, 3) images, B symbolic
  and (H, W) = `size`, or symbolic too with `size` None (where the network allows)."""
  check_platforms(platforms, getattr(loaded.model.head, "lowering", None))
  spec = "b, h, w, 3" if size is None else f"b, {size[0]}, {size[1]}, 3"
  shape = export.symbolic_shape(spec)
  fn = jax.jit(inference_fn(loaded, config))
  try:
    return export.export(fn, platforms=platforms)(jax.ShapeDtypeStruct(shape, jnp.uint8))
  except jax.errors.ConcretizationTypeError as e:
    if size is not None:
      raise
    raise ConfigError(
        f"config.model.head={config.model.head!r}: height and width cannot be symbolic "
        "(resize_bilinear and the sliding windows compute their weights from concrete "
        "sizes); pass --size=HxW") from e


def describe(loaded: predict.Loaded, config, input_shape, output_shapes, platforms) -> dict:
  """What an artefact is: its signature, classes, palette, weights and evaluation."""
  return {"input": {"shape": [str(d) for d in input_shape], "dtype": "uint8",
                    "layout": "NHWC RGB 0..255"},
          "outputs": [{"name": "labels", "shape": [str(d) for d in output_shapes[0]],
                       "dtype": "int32"},
                      {"name": "probabilities", "shape": [str(d) for d in output_shapes[1]],
                       "dtype": "float32"}],
          "platforms": list(platforms), "class_names": list(loaded.class_names),
          "palette": np.asarray(loaded.palette).tolist(), "weights": loaded.source,
          "eval": config.eval.to_dict(), "model": {"head": config.model.head,
                                                   "num_classes": config.model.num_classes}}


def write_files(output: str, data: bytes, info: dict):
  """`output` and `output`.json, each written to a .partial file and renamed into place."""
  output = os.path.abspath(output)
  os.makedirs(os.path.dirname(output), exist_ok=True)
  for path, content, mode in ((output, data, "wb"),
                              (output + ".json", json.dumps(info, indent=1), "w")):
    with open(path + ".partial", mode) as f:
      f.write(content)
    os.replace(path + ".partial", path)


def write(exported, loaded: predict.Loaded, config, output: str) -> dict:
  """Writes `output` (the serialized artefact) and `output`.json (what it is); returns the
  latter."""
  try:
    import flatbuffers  # noqa: F401  (jax.export's serialization needs it; the export extra)
  except ImportError:
    raise UserError('writing a jax.export artefact needs flatbuffers: pip install '
                    '"flaseg[export]" (or pip install flatbuffers)') from None
  info = describe(loaded, config, exported.in_avals[0].shape,
                  [a.shape for a in exported.out_avals], exported.platforms)
  write_files(output, exported.serialize(), info)
  return info


def onnx_config(config):
  """`config` as the ONNX graph computes it: whole image, one scale, no flip;
  `lax.conv_general_dilated` for every conv (no CPU matmul / Winograd branches) and the
  einsum attention without query chunks (no loops in the graph)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.eval.mode, c.eval.scales, c.eval.flip = "whole", (1.0,), False
    c.model.attention = ""
    c.model.lowering.update(conv="direct", dilated="lax", attention="chunked",
                            attention_max_bytes=2**62, relation_max_bytes=2**62)
  return c


def check_onnx_size(size):
  """The ONNX graph has a fixed height and width: `size` must be given."""
  if size is None:
    raise ConfigError("--format=onnx: pass --size=HxW (the ONNX graph has a fixed height and "
                      "width)")


def export_onnx(loaded: predict.Loaded, config, size, output: str) -> dict:
  """Writes the ONNX model of `inference_fn` under `onnx_config` for uint8 (B, H, W, 3)
  images (B symbolic, (H, W) = `size`) to `output`, and `output`.json; returns the latter."""
  check_onnx_size(size)
  py_logging.getLogger("jax2onnx").setLevel(py_logging.ERROR)  # its optional example plugins
  try:
    import jax2onnx
  except ImportError:
    raise UserError("--format=onnx needs jax2onnx, onnx and onnxruntime: bash "
                    "scripts/install_onnx.sh") from None
  c = onnx_config(config)
  onnx_loaded = loaded._replace(model=build_model(c.model))
  fn = inference_fn(onnx_loaded, c)
  model = jax2onnx.to_onnx(fn, [jax.ShapeDtypeStruct(("B", *size, 3), jnp.uint8)],
                           model_name=f"flaseg_{config.model.head}",
                           input_names=["images"], output_names=["labels", "probabilities"])
  # jax2onnx 0.17's intermediate shape annotations swap H and W around its NHWC <-> NCHW
  # transposes where H != W (onnxruntime then refuses the graph); the runtime infers them.
  del model.graph.value_info[:]
  info = describe(onnx_loaded, c, ("B", *size, 3),
                  [("B", *size), ("B", *size, c.model.num_classes)], ["onnx"])
  write_files(output, model.SerializeToString(), info)
  return info


FLAGS = flags.FLAGS


def define_flags():
  """The flags, defined when run as a program (so that importing this module defines none)."""
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/fla_folder.py"
                                  "[:arg].", lock_config=True)
  flags.DEFINE_string("workdir", "", "A training run: its latest checkpoint is exported.")
  flags.DEFINE_string("weights", "", "Weights written by python -m flaseg.convert.")
  flags.DEFINE_string("output", None, "The artefact to write (and OUTPUT.json beside it).")
  flags.DEFINE_string("size", "", "HxW of the input images; '' tries symbolic ones.")
  flags.DEFINE_list("platforms", [], "Platforms to lower for (cpu, cuda, rocm, tpu); default: "
                    "this machine's.")
  flags.DEFINE_enum("format", "jax", ["jax", "onnx"], "jax: a jax.export artefact; onnx: an "
                    "ONNX model of the whole-image single-scale forward (jax2onnx).")
  flags.mark_flags_as_required(["config", "output"])


def _fail(e: BaseException):
  if os.environ.get("FLASEG_DEBUG"):
    raise e
  print(f"flaseg.export_model: error: {' '.join(str(e).split())}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  try:
    size = parse_size(FLAGS.size)
    if FLAGS.format == "onnx":
      check_onnx_size(size)  # before the model is loaded
    loaded = predict.load_model(FLAGS.config, FLAGS.workdir, FLAGS.weights)
    if FLAGS.format == "onnx":
      info = export_onnx(loaded, FLAGS.config, size, FLAGS.output)
    else:
      exported = export_inference(loaded, FLAGS.config, size, FLAGS.platforms or None)
      info = write(exported, loaded, FLAGS.config, FLAGS.output)
  except UserError as e:
    _fail(e)
  print(f"exported {loaded.source} as {os.path.abspath(FLAGS.output)}: uint8 "
        f"{info['input']['shape']} -> labels {info['outputs'][0]['shape']}, probabilities "
        f"{info['outputs'][1]['shape']} ({', '.join(info['platforms'])})", flush=True)


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
