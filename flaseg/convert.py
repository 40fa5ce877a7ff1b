"""PyTorch checkpoints -> flaseg variables, and the `python -m flaseg.convert` CLI.

  python -m flaseg.convert --source=flanet --checkpoint=resnet101-deep.pth \
      --config=configs/fla_cityscapes.py --out=pretrained/r101_deep

The core is numpy only: the flaseg variable tree of the model (built from the config) is
walked module by module, each module's PyTorch name is derived from a per-source table, and
the tensors are transposed into flax layouts:

  Conv2d weight (O, I, kh, kw)  -> kernel (kh, kw, I, O)
  Linear weight (out, in)       -> kernel (in, out)
  BatchNorm weight / bias       -> params scale / bias
  BatchNorm running_mean / var  -> batch_stats mean / var (num_batches_tracked is ignored)

Every flax variable must find its tensor with the right shape, and every tensor of the
checkpoint must be used (classifier `fc.*` and, for a backbone taken from a whole model,
the non-backbone keys are the only ones skipped); otherwise one error lists all missing,
unexpected and mis-shaped names. Torch is only imported to read `.pth` files.

Sources (`--source`):
  torchvision, timm  ResNet-18/34/50/101 with the 7x7 stem (conv1, bn1, layerX.Y.convZ/bnZ,
                     downsample.0/1); timm resnet50d / resnet101d (deep stem conv1.0/1/3/4/6 +
                     bn1, avg_down downsample.1/2): config stem 'v1c', avg_down True
                     (exact at output stride 32: dilated, timm adds a 2x2 stride-1 pool
                     on the shortcut).
  mmseg              ResNetV1c (stem.0/1/3/4/6/7, ...), as an ImageNet backbone or inside a
                     segmentor (backbone.*, decode_head.*, auxiliary_head.*) with the FCN, NL,
                     DNL, DANet, EMANet, ISANet or CCNet head (NonLocal g/theta/phi and
                     EMANet's ema_mid_conv gain '.conv', gammas '.scale').
  flanet             CCNet/FLANet deep-stem ResNet (conv1.0/1/3/4/6 + bn1, e.g.
                     resnet101-deep.pth) and the whole official FLANet model (backbone.*,
                     conv.0/1/3/4, fully.*, conv_out1/2/3.conv.1/2/5).
  denoised_nl        the whole official DenoisedNL model (backbone.* as flanet, conv.0/1,
                     interp.0/1 = down_sample.downsample, down_sample.*, dnl.*,
                     conv_out1/2.conv.0/1/4).
  hrnet              HRNetV2 ImageNet files (official HRNet-Image-Classification, timm
                     hrnet_w*: conv1, bn1, layer1.*, transition*, stage*; their incre_modules,
                     downsamp_modules, final_layer, classifier are skipped); 'mmseg' and 'timm'
                     read the same names (mmseg segmentors: backbone.* + decode_head.*).
  attanet            the whole official AttaNet model (head.resnet.* in torchvision naming,
                     head.afm/conv_head*/sam.*, conv_out/conv_out1/conv_out2.*).

The output is an Orbax checkpoint of {'params', 'model_state'} holding the converted part of
the tree (paths from the model root); `config.init.backbone` / `config.init.checkpoint`
load it at the start of training (`load_converted` and `merge`, from
`train.init_pretrained`).
"""
import os
import re
import time

import numpy as np

from flaseg.errors import ConfigError, NotFoundError, UserError

SOURCES = ("torchvision", "timm", "mmseg", "flanet", "denoised_nl", "attanet", "hrnet",
           "dfnet", "attanet_light")
ALIASES = {"denoisednl": "denoised_nl"}  # the spelling of the issue / the repository name
# Where whole-model checkpoints keep the backbone.
_BACKBONE_PREFIX = {"attanet": "head.resnet.", "attanet_light": "head.backbone.branch."}
# Sources with whole-model tables.
_MODEL_SOURCES = ("mmseg", "flanet", "denoised_nl", "attanet", "attanet_light")
# Keys of ImageNet classifiers, never part of a segmentation model.
# HRNet ImageNet files (official, timm) also hold their classification neck.
_CLASSIFIER = re.compile(
    r"^(fc|head\.fc|classifier|incre_modules|downsamp_modules|final_layer)\.")


class ConversionError(UserError, ValueError):
  """A checkpoint that does not match the model; the message lists every bad name."""


# ---------------------------------------------------------------------------------------
# Reading state dicts.

def read_state_dict(path: str) -> dict:
  """{name: np.ndarray} from a `.pth`/`.pt` (needs torch), `.safetensors` or `.npz` file.

  Unwraps a top-level 'state_dict' or 'model' entry and a 'module.' prefix (DataParallel)."""
  if not os.path.isfile(path):
    raise NotFoundError(f"no checkpoint file {path}")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file
    except ImportError:
      raise ConversionError(f"reading {path} needs the safetensors package: pip install "
                            "'flaseg[safetensors]'") from None
    sd = _read(load_file, path)
  elif path.endswith(".npz"):
    def load_npz(p):  # allow_pickle=False: an object array is refused, never unpickled
      with np.load(p, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
    sd = _read(load_npz, path)
  else:
    try:
      import torch
    except ImportError:
      raise ConversionError(f"reading {path} needs torch (CPU is enough); or save the state "
                            "dict as .npz / .safetensors") from None
    # weights_only=True: a pickle that would build any object but tensors and plain
    # containers (i.e. run code) is refused before anything of it runs.
    sd = _read(lambda p: torch.load(p, map_location="cpu", weights_only=True), path)
  for key in ("state_dict", "model"):
    if isinstance(sd, dict) and isinstance(sd.get(key), dict):
      sd = sd[key]
  if not isinstance(sd, dict):
    raise ConversionError(f"{path} holds a {type(sd).__name__}, not a state dict "
                          f"({{name: tensor}})")
  out = {}
  for k, v in sd.items():
    if k.startswith("module."):
      k = k[len("module."):]
    out[k] = _to_numpy(v)
  return out


def _read(load, path: str):
  """`load(path)`, with anything a damaged or hostile file raises as one ConversionError."""
  try:
    return load(path)
  except Exception as e:  # torch / safetensors / numpy raise many types for a bad file
    text = " ".join(str(e).split())
    if "weights_only" in text or "Unsupported global" in text:
      raise ConversionError(
          f"refused {path}: it holds pickled Python objects besides tensors, which could run "
          f"code when loaded ({text[:200]}); save only the state dict (tensors)") from None
    raise ConversionError(f"cannot read {path}: {type(e).__name__}: {text[:300]}") from None


def _to_numpy(v) -> np.ndarray:
  if isinstance(v, np.ndarray):
    return v
  if hasattr(v, "detach"):  # torch.Tensor; bfloat16 has no numpy type
    v = v.detach().cpu()
    if str(v.dtype) == "torch.bfloat16":
      v = v.float()
    return v.numpy()
  return np.asarray(v)


# ---------------------------------------------------------------------------------------
# Name tables: flax module path (tuple, relative to the model root) -> torch module prefix.

def _split_index(name: str) -> str:
  """flaseg 'convs_0' / 'layer3_5' -> torch 'convs.0' / 'layer3.5'."""
  m = re.fullmatch(r"(.*)_(\d+)", name)
  return f"{m.group(1)}.{m.group(2)}" if m else name


_DEEP_STEM = {"stem_conv1": "conv1.0", "stem_bn1": "conv1.1", "stem_conv2": "conv1.3",
              "stem_bn2": "conv1.4", "stem_conv3": "conv1.6", "stem_bn3": "bn1"}
_V1C_STEM = {"stem_conv1": "stem.0", "stem_bn1": "stem.1", "stem_conv2": "stem.3",
             "stem_bn2": "stem.4", "stem_conv3": "stem.6", "stem_bn3": "stem.7"}
_TV_STEM = {"stem_conv1": "conv1", "stem_bn1": "bn1"}


def backbone_name(path, source: str, stem: str, avg_down: bool) -> str:
  """Torch prefix of a flaseg ResNet module (path relative to the backbone)."""
  first = path[0]
  if first.startswith("stem_"):
    if stem == "torchvision":
      table = _TV_STEM
    elif source == "mmseg":
      table = _V1C_STEM
    else:  # timm 'd' variants and CCNet/FLANet: conv1 is a Sequential, bn1 follows.
      table = _DEEP_STEM
    return table[first]
  parts = [_split_index(first)]
  if path[1] == "downsample":
    offset = 1 if avg_down else 0  # AvgPool is downsample.0
    parts.append(f"downsample.{offset + {'conv': 0, 'bn': 1}[path[2]]}")
  else:
    parts.append(path[1])
  return ".".join(parts)


_FLANET_HEAD = {("conv_0", "conv"): "conv.0", ("conv_0", "bn"): "conv.1",
                ("conv_1", "conv"): "conv.3", ("conv_1", "bn"): "conv.4",
                ("fully", "conv1"): "fully.conv1", ("fully", "conv2"): "fully.conv2",
                ("fully", "gamma"): "fully.gamma", ("fully", "conv", "conv"): "fully.conv.0",
                ("fully", "conv", "bn"): "fully.conv.1"}


def flanet_head_name(path) -> str:
  """Torch name of a module of flaseg's FLAHead in the official FLANet model."""
  if path in _FLANET_HEAD:
    return _FLANET_HEAD[path]
  if path[0] in ("conv_out1", "conv_out2", "conv_out3"):
    return _paper_output(path[0], path[1:], 1, 2, 5)  # conv.0 is the Upsample
  raise KeyError(path)


# mmcv ConvModules without norm (NonLocal2d g/theta/phi, EMANet's frozen 1x1).
_MMSEG_CONV_MODULES = ("g", "theta", "phi", "ema_mid_conv")


def _paper_output(name, path, conv, bn, cls) -> str:
  """FLANetOutput / DenoisedNLOutput: a Sequential `conv` with the given indices."""
  sub = {("conv", "conv"): conv, ("conv", "bn"): bn, ("cls",): cls}[path]
  return f"{name}.conv.{sub}"


def denoised_nl_head_name(path) -> str:
  """Torch name of a module of flaseg's DenoisedNLHead in the official DenoisedNL model."""
  if path[0] in ("conv_out1", "conv_out2"):
    return _paper_output(path[0], path[1:], 0, 1, 4)
  if path[:2] == ("dnl", "conv_out3"):
    return _paper_output("dnl.conv_out3", path[2:], 0, 1, 4)
  table = {("conv", "conv"): "conv.0", ("conv", "bn"): "conv.1",
           ("dnl", "conv", "conv"): "dnl.conv.0", ("dnl", "conv", "bn"): "dnl.conv.1",
           ("down_sample", "interp", "conv"): "interp.0",
           ("down_sample", "interp", "bn"): "interp.1"}
  if path in table:
    return table[path]
  if len(path) == 2 and path[0] in ("dnl", "down_sample"):
    return ".".join(path)  # dnl.conv1/2/3, dnl.gamma, down_sample.conv1/bn1/conv2/bn2
  raise KeyError(path)


def mmseg_head_name(path) -> str:
  """mmseg decode/auxiliary head names: flaseg 'convs_0/conv' -> 'decode_head.convs.0.conv',
  'cls/conv_seg' -> 'decode_head.conv_seg', 'aux_head/...' -> 'auxiliary_head....'."""
  root = "decode_head"
  if path[0] == "aux_head":
    root, path = "auxiliary_head", path[1:]
  parts = [_split_index(p) for p in path if p != "cls"]
  if parts[-1] in _MMSEG_CONV_MODULES:
    parts.append("conv")  # a ConvModule without norm: flaseg has a bare conv
  elif parts[-1] == "gamma":
    parts.append("scale")  # mmcv `Scale`
  return ".".join([root] + parts)


def torch_name(path, source: str, backbone_cfg) -> str:
  """Torch module prefix of flaseg module `path` ('backbone'/'head' first) for `source`."""
  stem = backbone_cfg.get("stem", "deep")
  avg_down = bool(backbone_cfg.get("avg_down", False))
  name = backbone_cfg.get("name", "resnet")
  if path[0] == "backbone" and name != "resnet":
    # Other backbones carry their converter table: `torch_name(path, source, backbone_cfg)`.
    from flaseg import models
    return models.BACKBONES[name].torch_name(path[1:], source, backbone_cfg)
  if path[0] == "backbone":
    return backbone_name(path[1:], source, stem, avg_down)
  if path[0] == "head":
    if source == "flanet":
      return flanet_head_name(path[1:])
    if source == "mmseg":
      return mmseg_head_name(path[1:])
    if source == "denoised_nl":
      return denoised_nl_head_name(path[1:])
    if source in ("attanet", "attanet_light"):  # outputs at the top, the rest in `head`
      outputs = ("conv_out", "conv_out1", "conv_out2")
      return ".".join(path[1:] if path[1] in outputs else ("head",) + path[1:])
    raise KeyError(f"source {source!r} has backbones only")
  raise KeyError(path)


# ---------------------------------------------------------------------------------------
# The conversion.

def _flatten(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) or hasattr(v, "items"):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat):
  tree = {}
  for path, v in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return tree


def _tensor_names(module_path, leaf, kind, ndim):
  """(torch suffix, transform) of one flax leaf; kind is the flax collection."""
  if kind == "batch_stats":
    return {"mean": "running_mean", "var": "running_var"}.get(leaf), None
  if leaf == "kernel":
    return "weight", ("conv" if ndim == 4 else "linear")
  if leaf == "scale":
    return "weight", None
  if leaf == "bias":
    return "bias", None
  return None, None  # a bare parameter (FLA gamma): the module path is the tensor name


def _transform(x, how):
  if how == "conv":
    return np.transpose(x, (2, 3, 1, 0))  # OIHW -> HWIO
  if how == "linear":
    return np.transpose(x, (1, 0))
  return x


def convert(state_dict: dict, source: str, target: dict, backbone_cfg, part: str = "model"):
  """Converts `state_dict` into the variables of the flaseg model whose (abstract) variables
  are `target` ({'params': ..., 'batch_stats': ..., ...}, e.g. from `jax.eval_shape`).

  part='backbone' converts params/backbone and batch_stats/backbone only (taking the
  'backbone.' ('head.resnet.' for AttaNet) keys of a whole-model checkpoint); part='model' converts every variable.
  Returns {'params': ..., 'model_state': {'batch_stats': ..., ...}} of numpy float32 arrays.
  Raises ConversionError listing every missing, unexpected and mis-shaped name."""
  source = ALIASES.get(source, source)
  if source not in SOURCES:
    raise ConfigError(f"--source={source!r}: choose one of {SOURCES}")
  if part not in ("backbone", "model"):
    raise ConfigError(f"part={part!r}: choose 'backbone' or 'model'")
  bb = _BACKBONE_PREFIX.get(source, "backbone.")
  sd = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")
        and not _CLASSIFIER.match(k[len(bb):] if k.startswith(bb) else k)}
  if source == "denoised_nl":  # `down_sample.downsample` is the `interp` module again
    twins = [k for k in sd if k.startswith("down_sample.downsample.")]
    for k in twins:
      twin = "interp." + k[len("down_sample.downsample."):]
      if twin in sd and np.array_equal(sd[twin], sd[k]):
        del sd[k]
  whole = any(k.startswith(bb) for k in sd)
  if part == "backbone" and whole:
    sd = {k[len(bb):]: v for k, v in sd.items() if k.startswith(bb)}
  flat_target = {(coll,) + p: v for coll in target for p, v in _flatten(target[coll]).items()}

  missing, shapes, no_name, out, used = [], [], [], {}, set()
  not_float, not_finite = [], []
  for (coll, *path), leaf_value in sorted(flat_target.items()):
    path = tuple(path)
    if part == "backbone" and path[0] != "backbone":
      continue
    module, leaf = path[:-1], path[-1]
    suffix, how = _tensor_names(module, leaf, coll, len(leaf_value.shape))
    try:
      prefix = torch_name(module if suffix else path, source, backbone_cfg)
    except KeyError:
      no_name.append("/".join((coll,) + path))
      continue
    if whole and part == "model" and path[0] == "backbone":
      prefix = bb + prefix
    name = f"{prefix}.{suffix}" if suffix else prefix
    if name not in sd:
      missing.append(f"{name} (for {'/'.join((coll,) + path)})")
      continue
    used.add(name)
    x = _transform(np.asarray(sd[name]), how)
    want = tuple(leaf_value.shape)
    if (x.shape != want and how is None and
        tuple(d for d in x.shape if d != 1) == tuple(d for d in want if d != 1)):
      x = x.reshape(want)  # only size-1 axes differ: gamma (1,) -> (), EMA bases (1, C, K)
    if x.shape != want:
      shapes.append(f"{name}: checkpoint {tuple(sd[name].shape)} -> {x.shape}, flaseg "
                    f"{'/'.join((coll,) + path)} {want}")
      continue
    if not np.issubdtype(x.dtype, np.floating):
      not_float.append(f"{name}: {x.dtype} (for {'/'.join((coll,) + path)})")
      continue
    if not np.isfinite(x).all():
      not_finite.append(f"{name}: {int(np.sum(~np.isfinite(x)))} of {x.size} values are "
                        f"NaN or Inf")
      continue
    out[(coll,) + path] = x.astype(np.float32)
  unexpected = sorted(set(sd) - used)
  if missing or unexpected or shapes or no_name or not_float or not_finite:
    lines = [f"checkpoint does not match the model (source={source}, part={part}):"]
    for title, names in (("missing in the checkpoint", missing),
                         ("unexpected in the checkpoint", unexpected),
                         ("wrong shape", shapes),
                         ("not floating point", not_float),
                         ("not finite", not_finite),
                         (f"flaseg variables with no {source} name", no_name)):
      if names:
        lines.append(f"  {title} ({len(names)}):")
        lines += [f"    {n}" for n in names]
    raise ConversionError("\n".join(lines))
  tree = _unflatten(out)
  params = tree.pop("params", {})
  return {"params": params, "model_state": tree}


def default_part(state_dict: dict, source: str) -> str:
  """'model' for a whole-model checkpoint (keys 'backbone.*', AttaNet 'head.resnet.*') of a
  source with a head table, else 'backbone'."""
  bb = _BACKBONE_PREFIX.get(source, "backbone.")
  whole = any(k.startswith(bb) for k in state_dict)
  return "model" if whole and source in _MODEL_SOURCES else "backbone"


def abstract_variables(config):
  """Shapes of the variables of `config.model` (nothing is computed)."""
  import jax
  from flaseg import models
  model = models.build_model(config.model)
  shape = (1, *tuple(config.data.crop_size), 3)
  params, state = jax.eval_shape(lambda r: models.init_variables(model, r, shape),
                                 jax.random.key(0))
  return {"params": params, **state}


# ---------------------------------------------------------------------------------------
# flaseg checkpoints of converted weights.

def save_converted(variables: dict, out_dir: str) -> str:
  """Writes {'params', 'model_state'} as an Orbax checkpoint in `out_dir` (must not exist)."""
  import orbax.checkpoint as ocp
  out_dir = os.path.abspath(out_dir)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(out_dir, {"params": variables["params"], "model_state": variables["model_state"]})
  ckptr.wait_until_finished()
  return out_dir


def load_converted(path: str) -> dict:
  """{'params', 'model_state'} of numpy arrays from a checkpoint written by
  `save_converted`."""
  import jax
  import orbax.checkpoint as ocp
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise NotFoundError(f"no converted checkpoint {path}; write one with "
                            "`python -m flaseg.convert`")
  restored = ocp.StandardCheckpointer().restore(path)
  restored = jax.tree.map(np.asarray, restored)
  return {"params": restored.get("params", {}), "model_state": restored.get("model_state", {})}


def merge(params, model_state, loaded: dict, require: str = ""):
  """Replaces the leaves of (params, model_state) present in `loaded` (same paths and shapes)
  and returns the new pair. Every leaf of `loaded` must exist in the model; with `require`
  ('backbone' or '' for all), every model leaf under it must be in `loaded`."""
  current = {("params",) + p: v for p, v in _flatten(params).items()}
  current.update({("model_state",) + p: v for p, v in _flatten(model_state).items()})
  new = {("params",) + p: v for p, v in _flatten(loaded["params"]).items()}
  new.update({("model_state",) + p: v for p, v in _flatten(loaded["model_state"]).items()})
  unknown = sorted("/".join(p) for p in new if p not in current)
  shapes = sorted(f"{'/'.join(p)}: checkpoint {tuple(np.shape(v))}, model "
                  f"{tuple(current[p].shape)}" for p, v in new.items()
                  if p in current and tuple(np.shape(v)) != tuple(current[p].shape))
  absent = []
  for p in current:
    inside = not require or (p[1] == require if p[0] == "params" else
                             len(p) > 2 and p[2] == require)
    if inside and p not in new:
      absent.append("/".join(p))
  if unknown or shapes or absent:
    lines = ["converted checkpoint does not match the model:"]
    for title, names in (("not in the model", unknown), ("wrong shape", shapes),
                         ("missing in the checkpoint", sorted(absent))):
      if names:
        lines.append(f"  {title} ({len(names)}):")
        lines += [f"    {n}" for n in names]
    raise ConversionError("\n".join(lines))
  new = {p: np.asarray(v, dtype=current[p].dtype) for p, v in new.items()}
  return _replace(params, new, ("params",)), _replace(model_state, new, ("model_state",))


def _replace(tree, flat, prefix):
  """A copy of the nested dict `tree` with the leaves at the paths of `flat` replaced."""
  out = {}
  for k, v in tree.items():
    path = prefix + (k,)
    out[k] = _replace(v, flat, path) if hasattr(v, "items") else flat.get(path, v)
  return out


# ---------------------------------------------------------------------------------------
# CLI.

def check_out(out: str) -> str:
  """`--out` must be a new folder in a writable parent (checked before any work, so that a
  conversion never fails, or hangs, at the end)."""
  from flaseg.workdir import check_writable
  out = os.path.abspath(out)
  if os.path.exists(out):
    raise ConfigError(f"--out={out} exists; give a new folder (nothing is overwritten)")
  parent = os.path.dirname(out)
  if not os.path.isdir(parent):
    raise NotFoundError(f"--out={out}: parent folder {parent} does not exist")
  check_writable(parent, "--out's parent folder")
  return out


def main(argv):
  del argv
  from absl import flags
  f = flags.FLAGS
  try:
    run(f.config, f.source, f.checkpoint, f.out, f.part)
  except UserError as e:  # bad input; anything else is a bug and shows its traceback
    fail(e)


def run(config, source: str, checkpoint: str, out: str, part: str = "") -> str:
  """The CLI's work: converts `checkpoint` for the model of `config` into the new folder `out`."""
  start = time.time()
  source = ALIASES.get(source, source)
  if not config.model.num_classes:
    raise ConfigError("config.model.num_classes=0 means 'the dataset's', which a conversion "
                      "does not read: pass --config.model.num_classes=K")
  out = check_out(out)
  sd = read_state_dict(checkpoint)
  part = part or default_part(sd, source)
  target = abstract_variables(config)
  variables = convert(sd, source, target, config.model.backbone, part)
  out = save_converted(variables, out)
  n = sum(int(np.size(v)) for v in _flatten(variables["params"]).values())
  print(f"converted {checkpoint} ({source}, {part}: {n:,} parameters) -> {out} in "
        f"{time.time() - start:.1f} s; train from it with "
        f"config.init.{'backbone' if part == 'backbone' else 'checkpoint'}={out}")
  return out


def fail(e: BaseException):
  """A user error: its message (a conversion error keeps its list of names, one per line),
  exit status 2."""
  import sys
  if os.environ.get("FLASEG_DEBUG"):
    raise e
  print(f"flaseg.convert: error: {str(e).strip()}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl flag parsing, with a bad flag, value or config file as one line."""
  from absl import flags
  for i, arg in enumerate(argv[1:], 1):
    if arg == "--config" and i + 1 < len(argv):
      arg = "--config=" + argv[i + 1]
    if arg.startswith("--config=") and not os.path.isfile(arg[len("--config="):].split(":")[0]):
      fail(ConfigError(f"--config: no such config file {arg[len('--config='):].split(':')[0]}"))
  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, TypeError, ValueError) as e:
    fail(UserError(" ".join(str(e).split())))


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "flaseg config of the target model.",
                                  lock_config=False)
  flags.DEFINE_enum("source", None, list(SOURCES) + list(ALIASES), "Naming of the checkpoint.")
  flags.DEFINE_string("checkpoint", None, "A .pth/.pt, .safetensors or .npz state dict.")
  flags.DEFINE_string("out", None, "Output folder (an Orbax checkpoint; must not exist).")
  flags.DEFINE_enum("part", "", ["", "backbone", "model"],
                    "What to convert; default: 'model' for whole mmseg / flanet / "
                    "denoised_nl / attanet checkpoints, else 'backbone'.")
  flags.mark_flags_as_required(["config", "source", "checkpoint", "out"])
  app.run(main, flags_parser=parse_flags)
