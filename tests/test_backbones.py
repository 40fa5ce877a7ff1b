"""The backbone interface: `config.model.backbone.name` picks the backbone, `feature_spec()`
describes what it returns (checked against what it does return), a neck adds features, and a
head that takes a feature the backbone does not give is a one-line error naming both."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import config_lib
from flaseg.errors import ConfigError
from flaseg.models import BACKBONES, build_model
from flaseg.models.necks import ResizeConcat


def smoke(**model):
  c = config_lib.load("configs/fcn_cityscapes.py:smoke")
  c.model.num_classes = 5
  for k, v in model.items():
    c.model[k] = v
  return c.model


@pytest.mark.parametrize("depth,stem,output_stride", [(18, "deep", 8), (50, "v1c", 16),
                                                      (18, "torchvision", 32)])
def test_resnet_feature_spec_is_what_it_returns(depth, stem, output_stride):
  backbone = BACKBONES["resnet"](depth=depth, stem=stem, output_stride=output_stride, width=8)
  x = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
  feats = jax.eval_shape(lambda v: backbone.init_with_output(jax.random.key(0), v)[0], x)
  spec = backbone.feature_spec()
  assert sorted(spec) == sorted(feats) == ["c2", "c3", "c4", "c5"]
  for name, (stride, channels) in spec.items():
    assert feats[name].shape == (2, 64 // stride, 96 // stride, channels), name


def test_unknown_backbone_and_field_are_one_line():
  cfg = smoke()
  cfg.backbone.name = "resnext"
  with pytest.raises(ConfigError, match=r"backbone.name='resnext': choose one of \[.*'resnet'"):
    build_model(cfg)
  cfg = smoke()
  cfg.backbone.widht = 8
  with pytest.raises(ConfigError, match="config.model.backbone.widht: unknown field of ResNet"):
    build_model(cfg)


def test_head_asking_for_a_missing_feature_names_both():
  cfg = smoke(head_kwargs={"channels": 16, "in_key": "concat"})
  with pytest.raises(ConfigError, match=r"head='fcn' takes features \['concat'\]; backbone "
                                        r"'resnet' gives \['c2', 'c3', 'c4', 'c5'\]"):
    build_model(cfg)


def test_resize_concat_neck_feeds_a_head():
  """FCN on HRNetV2's representation: c2..c5 resized to c2's size and concatenated."""
  cfg = smoke(neck="resize_concat", head_kwargs={"channels": 16, "in_key": "concat",
                                                  "num_convs": 1, "concat_input": False})
  model = build_model(cfg)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (1, 64, 96, 3)), jnp.uint8)
  variables = model.init(jax.random.key(0), x)
  assert variables["params"]["head"]["convs_0"]["conv"]["kernel"].shape[2] == 8 * (4 + 8 + 16 + 32)
  feats = model.apply(variables, x.astype(jnp.float32), method=lambda m, v: m.backbone(
      (v - jnp.asarray(m.mean)) / jnp.asarray(m.std), False))
  concat = ResizeConcat()(feats)["concat"]
  assert concat.shape == (1, 16, 24, 480)
  np.testing.assert_array_equal(concat[..., :32], feats["c2"])
  spec = ResizeConcat().feature_spec(BACKBONES["resnet"](depth=50, width=8).feature_spec())
  assert spec["concat"] == (4, 480)
  cfg.neck_kwargs = {"inputs": ("c2", "c6")}
  with pytest.raises(ConfigError, match=r"neck='resize_concat' takes features \['c6'\]"):
    build_model(cfg)
