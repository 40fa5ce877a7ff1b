"""Pictures of a trained run: predictions, attention maps and training curves.

  python scripts/visualize.py --config=configs/quickstart.py --workdir=runs/quickstart \
      [--images=0,1,2] [--out=DIR] [--channel=-1] [--pixels=Y,X;Y,X] [--config.key=value]

Restores the latest checkpoint of WORKDIR and writes to DIR (default WORKDIR/visualize):

  pred_<index>.png   validation image | ground truth | prediction
  fla_<index>.png    FLANet's FLA block (FLANet Fig. 6): for one channel c, its response (the FLA
                     output) over the image, the weight c gives its most attended channel at
                     every position (a_h of the column + a_w of the row), and the C x C map
                     averaged over positions
  sam_<index>.png    AttaNet's SAM (AttaNet Fig. 9): for each chosen pixel (a cross), its softmax
                     over the W column strips (H row strips for `horizontal`)
  curves.png         loss, learning rate and mIoU over steps, from WORKDIR/metrics.jsonl

The attention maps come out of the model with Flax `sow` ('intermediates'), so they are the
maps of the very forward pass that made the prediction. Needs matplotlib
(`pip install -e ".[viz]"`).
"""
import json
import os
import sys

import jax
import numpy as np
from absl import app, flags, logging
from flax import traverse_util
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from flaseg import data, export, parallel, train  # noqa: E402
from flaseg.errors import ConfigError, NotFoundError, UserError  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file of the run, e.g. "
                                "configs/quickstart.py[:arg].", lock_config=True)
flags.DEFINE_string("workdir", None, "The run's workdir (checkpoints/, metrics.jsonl).")
flags.DEFINE_string("images", "0,1,2", "Comma list of validation image indices.")
flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/visualize).")
flags.DEFINE_integer("channel", -1, "FLA channel to show (-1: the one whose response varies "
                     "most over the image).")
flags.DEFINE_string("pixels", "", "SAM pixels as 'y,x;y,x' in image coordinates (default: "
                    "three points spread over the image).")
flags.mark_flags_as_required(["config", "workdir"])


def load_run(config, workdir):
  """(model, variables, step, validation source) of the latest checkpoint in `workdir`."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise NotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
  source = data.build_source(config.data, config.data.val_split, config.seed)
  train.resolve_num_classes(config, source)
  mesh = parallel.make_mesh(jax.devices()[:1])
  model, state, step = train.restore_latest(config, workdir, mesh)
  return model, {"params": state.params, **state.model_state}, step, source


def make_forward(model):
  """jitted (variables, image) -> (logits (H, W, K), {sown name: array without batch axis})."""
  @jax.jit
  def run(variables, images):
    outputs, inter = model.apply(variables, images, train=False, mutable=["intermediates"])
    return outputs["out"], inter.get("intermediates", {})

  def forward(variables, image):
    logits, inter = run(variables, image[None])
    sown = {}
    for path, value in traverse_util.flatten_dict(jax.device_get(inter)).items():
      sown.setdefault(path[-1], np.asarray(value[0][0], np.float32))  # sow keeps a tuple
    return np.asarray(logits[0]), sown
  return forward


def _overlay(ax, image, heat, title, cmap="jet"):
  """`heat` (h, w) stretched over `image` (H, W, 3), half transparent, with a colour bar."""
  import matplotlib.pyplot as plt
  ax.imshow(image)
  h, w = image.shape[:2]
  im = ax.imshow(heat, cmap=cmap, alpha=0.55, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                 interpolation="bilinear")
  plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
  ax.set_title(title, fontsize=9)
  ax.axis("off")


def _save(fig, path):
  import matplotlib.pyplot as plt
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  print(path)


def plot_prediction(path, image, label, pred, source):
  import matplotlib.pyplot as plt
  from matplotlib.patches import Patch
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
  for ax, panel, title in zip(axes, (image, export.colorize(label, source.palette),
                                     export.colorize(pred, source.palette)),
                              ("image", "ground truth", "prediction")):
    ax.imshow(panel)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
  present = sorted(set(np.unique(label)) | set(np.unique(pred)))
  handles = [Patch(color=np.asarray(source.palette[k]) / 255, label=source.class_names[k])
             for k in present if k < len(source.class_names)]
  fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), fontsize=8,
             frameon=False)
  fig.subplots_adjust(bottom=0.15)
  _save(fig, path)


def pick_channel(response, channel):
  """`channel`, or (if -1) the channel whose FLA response varies most over positions."""
  c = response.shape[-1]
  if channel < 0:
    return int(np.argmax(response.reshape(-1, c).std(axis=0)))
  if channel >= c:
    raise ConfigError(f"--channel={channel}: the FLA block has {c} channels")
  return channel


def plot_fla(path, image, sown, channel):
  """FLA maps of one image: response of channel c, weight c -> d* per position, C x C map."""
  import matplotlib.pyplot as plt
  a_h, a_w, response = sown["attention_h"], sown["attention_w"], sown["response"]
  c = pick_channel(response, channel)
  h, w = response.shape[:2]
  row_h, row_w = a_h[:, c, :], a_w[:, c, :]                  # (W, C), (H, C): c attends to d
  d = int(np.argmax(row_h.mean(0) + row_w.mean(0)))          # its most attended channel
  weight = row_h[None, :, d] + row_w[:, None, d]             # (H, W)
  mean_map = (a_h.mean(0) + a_w.mean(0)) / 2                 # (C, C)
  fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
  axes[0].imshow(image)
  axes[0].set_title("image", fontsize=9)
  axes[0].axis("off")
  _overlay(axes[1], image, response[..., c], f"FLA response, channel {c}")
  _overlay(axes[2], image, weight, f"weight of channel {c} on channel {d}\n"
           f"(a_h of the column + a_w of the row, {h}x{w})")
  im = axes[3].imshow(mean_map, cmap="viridis")
  axes[3].axhline(c, color="red", lw=0.8)
  axes[3].set_title(f"C x C attention, mean over positions\n(row {c} in red)", fontsize=9)
  axes[3].set_xlabel("attended channel d", fontsize=8)
  axes[3].set_ylabel("channel c", fontsize=8)
  plt.colorbar(im, ax=axes[3], fraction=0.046, pad=0.02)
  _save(fig, path)


def parse_pixels(spec, height, width):
  """'y,x;y,x' -> [(y, x)], checked against the image size; '' -> three default points."""
  if not spec:
    return [(height // 2, width // 5), (height * 3 // 4, width // 2),
            (height * 2 // 5, width * 4 // 5)]
  pixels = []
  for item in spec.split(";"):
    try:
      y, x = (int(v) for v in item.split(","))
    except ValueError:
      raise ConfigError(f"--pixels={spec!r}: expected 'y,x;y,x'") from None
    if not (0 <= y < height and 0 <= x < width):
      raise ConfigError(f"--pixels: ({y}, {x}) is outside the {height}x{width} image")
    pixels.append((y, x))
  return pixels


def plot_sam(path, image, attention, pixels, horizontal):
  """AttaNet SAM: for each pixel, its softmax over the strips, drawn over the image."""
  import matplotlib.pyplot as plt
  s, fh, fw = attention.shape
  height, width = image.shape[:2]
  fig, axes = plt.subplots(1, len(pixels), figsize=(4.4 * len(pixels), 3.6), squeeze=False)
  for ax, (y, x) in zip(axes[0], pixels):
    weights = attention[:, y * fh // height, x * fw // width]   # (S,), sums to 1
    heat = weights[:, None] if horizontal else weights[None, :]  # strips as rows / columns
    kind = "row" if horizontal else "column"
    _overlay(ax, image, heat, f"pixel ({y}, {x}): softmax over {s} {kind} strips\n"
             f"(max {weights.max():.2f}, uniform {1 / s:.2f})", cmap="inferno")
    ax.plot([x], [y], marker="x", color="cyan", markersize=10, mew=2)
  _save(fig, path)


def plot_curves(path, metrics_path):
  """loss (and each output's loss), lr and mIoU over steps."""
  import matplotlib.pyplot as plt
  with open(metrics_path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  train = sorted((r for r in records if "loss" in r), key=lambda r: r["step"])
  evals = sorted((r for r in records if "miou" in r), key=lambda r: r["step"])
  fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
  steps = [r["step"] for r in train]
  axes[0].plot(steps, [r["loss"] for r in train], color="black", label="loss")
  for key in sorted({k for r in train for k in r if k.startswith("loss_")}):
    axes[0].plot(steps, [r.get(key, np.nan) for r in train], lw=0.8, alpha=0.7, label=key)
  axes[0].set_ylabel("loss")
  axes[0].legend(fontsize=8)
  axes[1].plot(steps, [r["lr"] for r in train], color="tab:orange")
  axes[1].set_ylabel("learning rate")
  if evals:
    axes[2].plot([r["step"] for r in evals], [r["miou"] for r in evals], "o-", color="tab:green")
  else:
    axes[2].text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                 transform=axes[2].transAxes)
  axes[2].set_ylim(0, 1)
  axes[2].set_ylabel("mIoU")
  axes[2].set_xlabel("step")
  for ax in axes:
    ax.grid(alpha=0.3)
  _save(fig, path)


def visualize(config, workdir, out=None, images=(0, 1, 2), channel=-1, pixels=""):
  """Writes the PNGs listed in the module docstring; returns their paths."""
  try:
    import matplotlib
  except ImportError:
    raise ImportError('scripts/visualize.py needs matplotlib: pip install -e ".[viz]"') from None
  matplotlib.use("Agg")
  workdir = os.path.abspath(workdir)
  out = os.path.abspath(out or os.path.join(workdir, "visualize"))
  model, variables, step, source = load_run(config, workdir)
  for index in images:
    if not 0 <= index < len(source):
      raise ConfigError(f"--images: index {index} is out of range (the {config.data.val_split} "
                       f"split has {len(source)} images)")
  os.makedirs(out, exist_ok=True)
  print(f"checkpoint {step} of {workdir} -> {out}")
  forward = make_forward(model)
  written, sown = [], {}
  for index in images:
    example = source[index]
    image, label = np.asarray(example["image"]), np.asarray(example["label"])
    logits, sown = forward(variables, image)
    name = f"{index:06d}.png"
    written.append(os.path.join(out, "pred_" + name))
    plot_prediction(written[-1], image, label, logits.argmax(-1), source)
    if "attention_h" in sown:
      written.append(os.path.join(out, "fla_" + name))
      plot_fla(written[-1], image, sown, channel)
    if "attention" in sown:
      written.append(os.path.join(out, "sam_" + name))
      horizontal = bool(config.model.head_kwargs.get("horizontal", False))
      plot_sam(written[-1], image, sown["attention"],
               parse_pixels(pixels, *image.shape[:2]), horizontal)
  if not {"attention_h", "attention"} & set(sown):
    print(f"(no FLA or SAM attention in head {config.model.head!r}: predictions only)")
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    written.append(os.path.join(out, "curves.png"))
    plot_curves(written[-1], metrics_path)
  return written


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  try:
    images = [int(i) for i in FLAGS.images.split(",") if i.strip()]
  except ValueError:
    images = None
  try:
    if images is None:
      raise ConfigError(f"--images={FLAGS.images!r}: expected a comma list of integers")
    visualize(FLAGS.config, FLAGS.workdir, FLAGS.out, images, FLAGS.channel, FLAGS.pixels)
  except (UserError, ImportError) as e:  # bad input, or matplotlib missing: one line
    if os.environ.get("FLASEG_DEBUG"):
      raise
    print(f"visualize: error: {e}", file=sys.stderr)
    sys.exit(2)

if __name__ == "__main__":
  app.run(main)
