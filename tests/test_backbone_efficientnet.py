"""EfficientNet (flaseg/models/efficientnet.py) against timm's `tf_efficientnet_b7` / `_b0`
features_only models: random weights and BN statistics, eval mode, an H != W input with odd
sizes on the way down (asymmetric TF "same" padding), converted with `convert.convert`
(source 'timm'); at output stride 32 and dilated to 8 (B7) and 16 (B0). Skips without
torch / timm. B7 takes about a minute on 2 cores (timm builds and randomises 62M parameters;
flaseg jit-compiles at --xla_backend_optimization_level=0, tests/conftest.py)."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import config_lib, convert
from flaseg.errors import ConfigError
from flaseg.models import BACKBONES, build_model
from flaseg.models.efficientnet import EfficientNet, block_plan, same_padding
from torch_equivalence import import_torchvision, randomise, rel_diff, state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5
SHAPE = (1, 50, 74)  # 50x74 -> 25x37 -> 13x19 -> 7x10 -> 4x5


@pytest.mark.parametrize("variant,output_stride", [("b0", 32), ("b0", 16), ("b0", 8),
                                                   ("b3", 16), ("b7", 8)])
def test_feature_spec_is_what_it_returns(variant, output_stride):
  backbone = BACKBONES["efficientnet"](variant=variant, output_stride=output_stride)
  x = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
  feats = jax.eval_shape(lambda v: backbone.init_with_output(jax.random.key(0), v)[0], x)
  spec = backbone.feature_spec()
  assert sorted(spec) == sorted(feats) == ["c2", "c3", "c4", "c5"]
  for name, (stride, channels) in spec.items():
    assert feats[name].shape == (2, 64 // stride, 96 // stride, channels), name
  if variant == "b7":
    assert [spec[k][1] for k in ("c2", "c3", "c4", "c5")] == [48, 80, 224, 640]


def test_plan_and_padding():
  """Repeats (ceil of 3.1x), dilation from the stride-16 stage on at output stride 8 (the first
  block of a dilated stage keeps the previous dilation), and TF "same" padding."""
  plan = block_plan("b7", 8)
  assert [len(s) for s in plan] == [4, 7, 7, 10, 10, 13, 4]
  assert [(b["stride"], b["dilation"]) for b in plan[3][:2]] == [(1, 1), (1, 2)]
  assert [(b["stride"], b["dilation"]) for b in plan[5][:2]] == [(1, 2), (1, 4)]
  assert plan[6][0]["dilation"] == 4 and plan[6][-1]["out_stride"] == 8
  assert same_padding(64, 3, 2, 1) == (0, 1) and same_padding(63, 3, 2, 1) == (1, 1)
  assert same_padding(64, 5, 2, 1) == (1, 2) and same_padding(7, 5, 1, 4) == (8, 8)


def test_unknown_fields_are_one_line():
  with pytest.raises(ConfigError, match=r"model.backbone.variant='b9': choose one of \['b0'"):
    EfficientNet(variant="b9").feature_spec()
  with pytest.raises(ConfigError, match=r"model.backbone.output_stride=4: choose 8, 16 or 32"):
    EfficientNet(output_stride=4).feature_spec()


def test_names_and_config():
  name = EfficientNet.torch_name
  assert name(("blocks_3_1", "se", "conv_reduce"), "timm", {}) == "blocks.3.1.se.conv_reduce"
  assert name(("conv_stem",), "timm", {}) == "conv_stem"
  with pytest.raises(KeyError):
    name(("conv_stem",), "mmseg", {})
  with pytest.raises(KeyError):
    name(("head",), "timm", {})
  c = config_lib.load(os.path.join(REPO, "configs", "sanet_efficientnet_pascal_context.py"))
  assert c.model.backbone.to_dict() == dict(name="efficientnet", variant="b7",
                                            output_stride=8, drop_path_rate=0.0)
  assert c.data.context_60 and c.train.steps == 12495
  assert build_model(c.model).backbone.feature_spec()["c5"] == (8, 640)


_CACHE = {}


def _timm_reference(variant):
  """(torch, timm, the randomised timm model at output stride 32, its converted flaseg
  variables) for `variant`, built once per session."""
  if variant not in _CACHE:
    torch, _ = import_torchvision()  # timm imports torchvision
    timm = pytest.importorskip("timm")
    net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False, features_only=True,
                            out_indices=(1, 2, 3, 4))
    randomise(torch, net)
    sd = state_dict(net)
    cfg = dict(name="efficientnet", variant=variant)
    model = EfficientNet(variant=variant)
    target = jax.eval_shape(lambda r: model.init(r, jnp.zeros((1, 64, 64, 3))),
                            jax.random.key(0))
    target = {c: {"backbone": t} for c, t in target.items()}
    v = convert.convert(sd, "timm", target, cfg, "backbone")
    variables = {"params": v["params"]["backbone"],
                 "batch_stats": v["model_state"]["batch_stats"]["backbone"]}
    _CACHE[variant] = (torch, timm, net, variables)
  return _CACHE[variant]


@pytest.mark.parametrize("variant,output_stride", [("b7", 32), ("b7", 8), ("b0", 16)])
def test_equals_timm(variant, output_stride):
  torch, timm, net, variables = _timm_reference(variant)
  if output_stride != 32:  # timm's builder dilates: the same weights, other strides
    net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False,
                            features_only=True, out_indices=(1, 2, 3, 4),
                            output_stride=output_stride)
    net.load_state_dict(_CACHE[variant][2].state_dict())
    net.eval()
  x = np.random.default_rng(1).standard_normal((SHAPE[0], 3) + SHAPE[1:]).astype(np.float32)
  with torch.no_grad():
    ref = [t.numpy().transpose(0, 2, 3, 1) for t in net(torch.from_numpy(x))]
  model = EfficientNet(variant=variant, output_stride=output_stride)
  spec = model.feature_spec()
  info = net.feature_info
  assert [spec[k] for k in ("c2", "c3", "c4", "c5")] == list(zip(info.reduction(),
                                                                 info.channels()))
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  for key, r in zip(("c2", "c3", "c4", "c5"), ref):
    assert out[key].shape == r.shape, (key, out[key].shape, r.shape)
    rel = rel_diff(out[key], r)
    print(f"tf_efficientnet_{variant} os{output_stride} {key}: max relative difference {rel:.2e}")
    assert rel < TOL, (key, rel)
  if variant == "b0":  # stochastic depth is off in eval mode, on (with 'dropout') in training
    dropped = EfficientNet(variant=variant, output_stride=output_stride, drop_path_rate=0.5)
    again = jax.jit(lambda v, x: dropped.apply(v, x, train=False))(
        variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_array_equal(again["c5"], out["c5"])
    shapes = jax.eval_shape(lambda v, x: dropped.apply(
        v, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]),
        variables, jnp.zeros((2, 32, 48, 3)))
    assert shapes[0]["c5"].shape == (2, 2, 3, 320)
