"""Every network lowers for CUDA and TPU: `jax.export` of every network's inference function
for CUDA, and of the dilated ones' train step and inference for CUDA and TPU, at `:smoke`, sharded over the 8-device mesh as `flaseg.train` shards them, with no
device of either kind (lowering only, nothing compiled, nothing written).

In the exported StableHLO every conv layer of the model is a convolution (the CPU lowering's
matmul 1x1 convs, Winograd tiles and per-tap weight gradients are absent: they would leave
fewer convolutions than conv kernels), and on CUDA no convolution dilates its kernel (the
sub-grid formulation, `Lowering.dilated='auto'`) while TPU keeps lax's dilated ones.
"""
import glob
import os

import jax
import jax.numpy as jnp
import pytest

from flaseg import config_lib, evaluate, parallel, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every network config (study.py and fla_ablation.py recombine these heads and backbones).
NETWORK_CONFIGS = sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
    if os.path.basename(p) not in ("study.py", "fla_ablation.py"))
# Train steps too, for CUDA and TPU: the dilated backbones (ResNet-D8 with FLANet's head,
# EfficientNet's dilated depthwise convs).
TRAIN_CONFIGS = ["configs/fla_cityscapes.py", "configs/sanet_efficientnet_pascal_context.py"]


def _network(path):
  config = config_lib.load(f"{path}:smoke")
  config.model.num_classes = 5
  config.train.batch_size = 8
  return config


def _distinct(paths):
  """`paths` whose `:smoke` networks differ (configs of one network on several datasets
  lower once); the first path of each network is kept."""
  seen, kept = set(), []
  for path in paths:
    key = _network(path).model.to_json()
    if key not in seen:
      seen.add(key)
      kept.append(path)
  return kept


def exported_modules(config, platform, train_step=True):
  """StableHLO text of the inference function and (with `train_step`) of the train step for
  `platform`, and the model's number of conv kernels."""
  mesh = parallel.make_mesh()
  model, tx, schedule, abstract_state, image_shape = train.build(config, mesh)
  repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
  images = jax.ShapeDtypeStruct(image_shape, jnp.uint8, sharding=sharded)
  kernels = sum(1 for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_state.params)
                if leaf.ndim == 4 and "kernel" in jax.tree_util.keystr(path))
  probs = evaluate.make_probs_fn(model, config.eval, config.model.align_corners)
  variables = {"params": abstract_state.params, **abstract_state.model_state}
  infer = jax.jit(lambda v, x: probs(v, x, x.shape[1:3]), in_shardings=(repl, sharded))
  infer_text = jax.export.export(infer, platforms=[platform])(variables, images).mlir_module()
  if not train_step:
    return infer_text, "", kernels
  step = jax.jit(train.make_train_step(model, tx, schedule, config.loss,
                                       config.data.ignore_label),
                 in_shardings=(repl, sharded, repl), out_shardings=(repl, repl))
  batch = {"image": images,
           "label": jax.ShapeDtypeStruct(image_shape[:3], jnp.int32, sharding=sharded)}
  train_text = jax.export.export(step, platforms=[platform])(
      abstract_state, batch, jax.random.key(0)).mlir_module()
  return infer_text, train_text, kernels


def _convolutions(text):
  return [line for line in text.splitlines() if "stablehlo.convolution" in line]


def _dilated(convs):
  """The convolutions that dilate their kernel, weight gradients ([f, 0, 1, b] inputs, whose
  kernel dilation is the forward stride) left out."""
  return [c for c in convs if "rhs_dilate" in c and "[f, 0, 1, b]x" not in c]


def _check(config, platform, train_step=True):
  infer_text, train_text, kernels = exported_modules(config, platform, train_step)
  assert "sharding" in infer_text  # lowered for the mesh, not one device
  infer_convs, train_convs = _convolutions(infer_text), _convolutions(train_text)
  # Inference runs the 'out' path (auxiliary heads left out), every conv a convolution: the
  # CPU lowering (1x1 convs as matmuls, Winograd) would leave far fewer.
  assert len(infer_convs) >= kernels // 2, (len(infer_convs), kernels)
  # Every conv kernel: a forward and a weight-gradient convolution at least.
  assert not train_step or len(train_convs) >= 2 * kernels, (len(train_convs), kernels)
  return infer_convs + train_convs


NO_DILATION = "a dilated conv left for CUDA"


@pytest.mark.parametrize("path", _distinct(NETWORK_CONFIGS))
def test_inference_lowers_for_cuda(path):
  """Every network: its inference for CUDA, with no dilated conv."""
  assert not _dilated(_check(_network(path), "cuda", train_step=False)), NO_DILATION


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("path", TRAIN_CONFIGS)
def test_train_step_and_inference_lower(path, platform):
  """The dilated backbones: train step and inference, CUDA and TPU; TPU keeps lax's dilated
  convs."""
  dilated = _dilated(_check(_network(path), platform))
  assert not dilated if platform == "cuda" else dilated
