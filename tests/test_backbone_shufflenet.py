"""ShuffleNetV2 (flaseg/models/shufflenet.py) equals torchvision's `shufflenet_v2_x1_0`.

Reference: torchvision's own model with random weights and random BN statistics, converted
with flaseg's converter (source 'torchvision'); every feature compared in eval mode on an
H != W input. At output stride 8 / 16 the reference is the same torchvision model with its
depthwise convs of stage3 / stage4 set to stride 1, dilation and padding 2 / 4 (built from
torchvision's modules, not from flaseg). Skips without torch / torchvision.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import config_lib, convert
from flaseg.errors import ConfigError
from flaseg.models import BACKBONES, build_model
from flaseg.models.shufflenet import ShuffleNetV2
from torch_equivalence import import_torchvision, randomise

TOL = 1e-5
CONFIG = "configs/attanet_shufflenet_cityscapes.py"




def _dilate(torch, net, output_stride):
  """torchvision's network made DeepLab-style dilated: every 3x3 depthwise conv of stage3
  (output stride 8) and stage4 (8 and 16) gets stride 1 and dilation = padding = 2 or 4.
  The units keep their `stride` attribute, so the first one still runs both branches."""
  dilations = {8: {"stage3": 2, "stage4": 4}, 16: {"stage4": 2}, 32: {}}[output_stride]
  for stage, d in dilations.items():
    for m in getattr(net, stage).modules():
      if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
        m.stride, m.dilation, m.padding = (1, 1), (d, d), (d, d)
  return net


def _torch_features(torch, net, x):
  """{'c2': maxpool, 'c3': stage2, 'c4': stage3, 'stage4', 'conv5'} of NHWC numpy `x`."""
  out = {}
  with torch.no_grad():
    y = net.maxpool(net.conv1(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())))
    out["c2"] = y
    for key, stage in (("c3", net.stage2), ("c4", net.stage3), ("stage4", net.stage4),
                       ("conv5", net.conv5)):
      y = stage(y)
      out[key] = y
  return {k: v.numpy().transpose(0, 2, 3, 1) for k, v in out.items()}


def _config(backbone: dict, crop):
  c = config_lib.load(CONFIG)
  c.model.backbone.update(backbone)
  c.data.crop_size = crop
  return c


@pytest.mark.parametrize("output_stride,conv5", [(32, True), (8, True), (16, False)])
def test_equals_torchvision(output_stride, conv5):
  torch, torchvision = import_torchvision()
  net = randomise(torch, torchvision.models.shufflenet_v2_x1_0())
  net = _dilate(torch, net, output_stride)
  x = np.random.default_rng(1).standard_normal((1, 72, 104, 3)).astype(np.float32)
  ref = _torch_features(torch, net, x)
  stage4, conv5_out = ref.pop("stage4"), ref.pop("conv5")
  ref["c5"] = conv5_out if conv5 else stage4
  sd = {k: v.numpy() for k, v in net.state_dict().items()}
  assert "fc.weight" in sd  # the ImageNet classifier is skipped by the converter
  if not conv5:  # stage4 is 'c5': conv5 is not part of the network
    sd = {k: v for k, v in sd.items() if not k.startswith("conv5.")}

  config = _config(dict(output_stride=output_stride, conv5=conv5), x.shape[1:3])
  v = convert.convert(sd, "torchvision", convert.abstract_variables(config),
                      config.model.backbone, part="backbone")
  backbone = build_model(config.model).backbone
  feats = backbone.apply({"params": v["params"]["backbone"],
                          "batch_stats": v["model_state"]["batch_stats"]["backbone"]},
                         jnp.asarray(x))
  assert sorted(feats) == sorted(ref) == ["c2", "c3", "c4", "c5"]
  spec = backbone.feature_spec()
  for name, r in ref.items():
    stride, channels = spec[name]
    assert feats[name].shape == r.shape == (1, -(-72 // stride), -(-104 // stride), channels)
    rel = float(np.max(np.abs(np.asarray(feats[name]) - r)) / np.max(np.abs(r)))
    print(f"os {output_stride} {name}: max relative difference {rel:.2e}")
    assert rel <= TOL, (name, rel)


@pytest.mark.parametrize("width_mult,output_stride,conv5", [
    (1.0, 32, True), (1.0, 8, True), (0.5, 16, False), (2.0, 8, True), (1.5, 32, False)])
def test_feature_spec_is_what_it_returns(width_mult, output_stride, conv5):
  backbone = BACKBONES["shufflenet_v2"](width_mult=width_mult, output_stride=output_stride,
                                        conv5=conv5)
  x = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
  feats = jax.eval_shape(lambda v: backbone.init_with_output(jax.random.key(0), v)[0], x)
  spec = backbone.feature_spec()
  assert sorted(spec) == sorted(feats) == ["c2", "c3", "c4", "c5"]
  for name, (stride, channels) in spec.items():
    assert feats[name].shape == (2, 64 // stride, 96 // stride, channels), name
  stage4 = {0.5: 192, 1.0: 464, 1.5: 704, 2.0: 976}[width_mult]
  assert spec["c5"][1] == ((2048 if width_mult == 2.0 else 1024) if conv5 else stage4)


def test_parameter_count_is_torchvisions():
  """torchvision shufflenet_v2_x1_0 has 2,278,604 parameters, 1,025,000 of them in `fc`."""
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  params = jax.eval_shape(lambda v: ShuffleNetV2().init(jax.random.key(0), v), x)["params"]
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == 2278604 - 1025000


def test_bad_fields_are_one_line():
  with pytest.raises(ConfigError, match=r"width_mult=0.75: choose one of \[0.5, 1.0, 1.5"):
    ShuffleNetV2(width_mult=0.75).feature_spec()
  with pytest.raises(ConfigError, match="output_stride=4: choose 8, 16 or 32"):
    ShuffleNetV2(output_stride=4).feature_spec()
  cfg = _config({}, (64, 64)).model
  cfg.backbone.depth = 18
  with pytest.raises(ConfigError, match="backbone.depth: unknown field of ShuffleNetV2"):
    build_model(cfg)


def test_torch_names():
  name = ShuffleNetV2.torch_name
  assert name(("bn1",), "torchvision", {}) == "conv1.1"
  assert name(("stage3_0", "branch1_pw_bn"), "torchvision", {}) == "stage3.0.branch1.3"
  assert name(("stage4_3", "branch2_dw"), "torchvision", {}) == "stage4.3.branch2.3"
  assert name(("conv5",), "torchvision", {}) == "conv5.0"
  for path, source in ((("stage2_0", "conv"), "torchvision"), (("conv1",), "timm")):
    with pytest.raises(KeyError):
      name(path, source, {})
