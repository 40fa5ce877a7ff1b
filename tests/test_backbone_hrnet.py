"""HRNetV2 (flaseg/models/hrnet.py) against mmseg 1.2.2's own `HRNet` backbone and its whole
FCN-HRNet `EncoderDecoder` (configs/_base_/models/fcn_hr18.py), built from mmseg's classes
with random weights and random BN statistics, converted with flaseg's converter."""
import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import config_lib, convert
from flaseg.errors import ConfigError
from flaseg.models import BACKBONES, build_model
from flaseg.models.hrnet import HRNet
from flaseg.models.segmenter import IMAGENET_MEAN, IMAGENET_STD
from reference.torch import mmseg_peers
from torch_equivalence import import_torch, randomise, rel_diff, state_dict

TOL = 1e-5
CONFIG = "configs/fcn_hrnet48_cityscapes.py"


def _torch_and_mmseg():
  torch = import_torch()
  pytest.importorskip("mmseg")
  pytest.importorskip("mmcv")
  return torch, mmseg_peers.import_mmseg(torch)


def _randomised(torch, net, seed=0):
  """torch_equivalence.randomise, then eval mode (mmseg's HRNet.train() returns None)."""
  randomise(torch, net, seed)
  net.eval()
  return net


def _config(width, size, num_classes=19):
  c = config_lib.load(CONFIG)
  c.model.backbone.width = width
  c.model.head_kwargs.channels = 15 * width
  c.model.num_classes = num_classes
  c.data.crop_size = size
  return c


@pytest.mark.parametrize("width,size", [(18, (64, 96)), (32, (65, 97)), (48, (33, 50))])
def test_feature_spec_is_what_it_returns(width, size):
  backbone = HRNet(width=width)
  x = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
  feats = jax.eval_shape(lambda v: backbone.init_with_output(jax.random.key(0), v)[0], x)
  spec = backbone.feature_spec()
  assert sorted(spec) == sorted(feats) == ["c2", "c3", "c4", "c5"]
  for name, (stride, channels) in spec.items():
    h, w = size  # stride-2 3x3 convs: ceil at every halving
    for _ in range(stride.bit_length() - 1):
      h, w = -(-h // 2), -(-w // 2)
    assert feats[name].shape == (2, h, w, channels), name
  assert spec["c5"] == (32, 8 * width)


def test_unknown_width_is_one_line():
  with pytest.raises(ConfigError, match=r"model.backbone.width=40: choose one of \(18, 32, 48\)"):
    HRNet(width=40).feature_spec()
  with pytest.raises(ConfigError, match=r"model.backbone.num_modules=\(1, 4\): three positive"):
    HRNet(num_modules=(1, 4)).feature_spec()
  with pytest.raises(ConfigError, match="model.backbone.num_blocks=0: a positive int"):
    HRNet(num_blocks=0).feature_spec()
  cfg = _config(18, (64, 96)).model
  cfg.backbone.depth = 50
  with pytest.raises(ConfigError, match="config.model.backbone.depth: unknown field of HRNet"):
    build_model(cfg)
  assert BACKBONES["hrnet"] is HRNet


def test_parameter_counts():
  """HRNetV2-W48: 65.33M backbone, 65.86M with the 1x1 head at 19 classes (HRNet README:
  65.8M); W18: 9.56M backbone."""
  def count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))
  params = convert.abstract_variables(_config(48, (64, 64)))["params"]
  assert (count(params["backbone"]), count(params)) == (65_325_120, 65_858_659)
  params = convert.abstract_variables(_config(18, (64, 64)))["params"]
  assert count(params["backbone"]) == 9_562_260


@pytest.mark.parametrize("width,size,blocks,modules", [
    (18, (64, 96), 4, (1, 4, 3)), (18, (65, 97), 4, (1, 4, 3)), (48, (64, 96), 4, (1, 4, 3)),
    (18, (64, 96), 2, (1, 3, 2))])  # the last: mmseg's HRNetV2-W18-Small (fcn_hr18s)
def test_backbone_equals_mmseg(width, size, blocks, modules):
  """All four branches; an odd size exercises the fuse layers' two-step upsampling. Converted
  as a bare ImageNet file (source 'hrnet', with the classification keys it skips) and as
  mmseg's bare backbone."""
  torch, models = _torch_and_mmseg()
  net = _randomised(torch, models.build(dict(type="HRNet", extra=mmseg_peers.hrnet_extra(width, blocks, modules),
                                            norm_cfg=dict(type="BN", requires_grad=True))))
  x = np.random.default_rng(1).standard_normal((1, 3, *size)).astype(np.float32)
  with torch.no_grad():
    ref = [t.numpy().transpose(0, 2, 3, 1) for t in net(torch.from_numpy(x))]
  sd = state_dict(net)
  config = _config(width, size)
  config.model.backbone.update(num_blocks=blocks, num_modules=modules)
  target = convert.abstract_variables(config)
  imagenet = dict(sd, **{k: np.zeros(3, np.float32) for k in (
      "incre_modules.0.0.conv1.weight", "downsamp_modules.0.0.weight",
      "final_layer.0.weight", "classifier.weight", "classifier.bias")})
  for source, state in (("hrnet", imagenet), ("mmseg", sd)):
    v = convert.convert(state, source, target, config.model.backbone, part="backbone")
  out = HRNet(width=width, num_blocks=blocks, num_modules=modules).apply(
      {"params": v["params"]["backbone"],
       "batch_stats": v["model_state"]["batch_stats"]["backbone"]},
      jnp.asarray(x.transpose(0, 2, 3, 1)))
  for k, r in zip(("c2", "c3", "c4", "c5"), ref):
    assert out[k].shape == r.shape, k
    rel = rel_diff(out[k], r)
    print(f"HRNet-W{width} {size} {k}: max relative difference {rel:.2e}")
    assert rel < TOL, (k, rel)


@pytest.mark.parametrize("width", [18, 48])
def test_fcn_hrnet_equals_mmseg(width):
  """mmseg's fcn_hr18 / fcn_hr48 EncoderDecoder (HRNet + FCNHead resize_concat, 1x1, no
  dropout) converted whole (part='model', source 'mmseg') against build_model of
  configs/fcn_hrnet48_cityscapes.py at that width: 'out' at the decode resolution (1/4)."""
  torch, _ = _torch_and_mmseg()
  k = 5
  img = np.random.default_rng(3).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
  config = _config(width, img.shape[1:3], k)
  net = _randomised(torch, mmseg_peers.hrnet_fcn_segmentor(config), seed=2)
  x = (img - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
  with torch.no_grad():
    ref = net.decode_head(net.extract_feat(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())))
    ref = ref.numpy().transpose(0, 2, 3, 1)

  model = build_model(config.model)
  v = convert.convert(state_dict(net), "mmseg",
                      convert.abstract_variables(config), config.model.backbone, part="model")

  def decode(m, images):
    x = (images - jnp.asarray(m.mean)) / jnp.asarray(m.std)
    return m.head(m.neck(m.backbone(x, False)), False)["out"]

  out = model.apply({"params": v["params"], **v["model_state"]}, jnp.asarray(img),
                    method=decode)
  assert out.shape == ref.shape == (1, 16, 24, k)
  rel = rel_diff(out, ref)
  print(f"fcn_hr{width}: max relative difference {rel:.2e}")
  assert rel < TOL, rel
  full = model.apply({"params": v["params"], **v["model_state"]}, jnp.asarray(img))["out"]
  assert full.shape == (1, 64, 96, k)


@pytest.mark.parametrize("path", [CONFIG, "configs/fcn_hrnet48_ade20k.py"])
def test_configs_are_mmseg_fcn_hr48(path):
  """The mmseg recipe of fcn_hr48_4xb2-80k_cityscapes-512x1024 / fcn_hr48_4xb4-160k_ade20k-
  512x512 and its network; `:smoke` builds a one-block HRNet-W18."""
  c = config_lib.load(path)
  ade = "ade20k" in path
  assert dict(c.model.backbone) == dict(name="hrnet", width=48)
  assert c.model.neck == "resize_concat" and not c.model.align_corners
  assert dict(c.model.head_kwargs) == dict(channels=720, num_convs=1, concat_input=False,
                                           kernel=1, dropout=0.0, in_key="concat")
  assert tuple(c.data.crop_size) == ((512, 512) if ade else (512, 1024))
  assert (c.train.steps, c.train.batch_size) == ((160000, 16) if ade else (80000, 8))
  assert (c.optim.lr, c.optim.end_lr, c.optim.weight_decay) == (0.01, 1e-4, 5e-4)
  assert not c.loss.avg_non_ignore and dict(c.loss.weights) == {"out": 1.0}
  assert c.eval.mode == "whole" and c.model.num_classes == (150 if ade else 19)
  s = config_lib.load(path + ":smoke")
  assert dict(s.model.backbone) == dict(name="hrnet", width=18, num_blocks=1,
                                        num_modules=(1, 1, 1))
  assert s.model.head_kwargs.channels == 16 and s.model.head_kwargs.kernel == 1
  spec = build_model(s.model).backbone.feature_spec()
  assert spec["c5"] == (32, 144)


def test_conv_macs_count_as_hrnet_modelsummary():
  """scripts/param_counts.py --macs against HRNet's own counting (lib/utils/modelsummary.py:
  per Conv2d, prod(weight shape) * output H x W, by forward hooks) on mmseg's fcn_hr18 at an
  H != W size: the same number, so the 696.2 of the HRNet README compares as conv MACs / 2**30."""
  spec = importlib.util.spec_from_file_location(
      "param_counts", os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts",
                                   "param_counts.py"))
  param_counts = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(param_counts)
  torch, _ = _torch_and_mmseg()
  size = (64, 96)
  config = _config(18, size)
  net = _randomised(torch, mmseg_peers.hrnet_fcn_segmentor(config))
  macs = []

  def hook(module, inputs, output):
    macs.append(module.weight.numel() * output.shape[2] * output.shape[3])

  for module in net.modules():
    if isinstance(module, torch.nn.Conv2d):
      module.register_forward_hook(hook)
  with torch.no_grad():
    net.decode_head(net.extract_feat(torch.zeros(1, 3, *size)))
  assert param_counts.conv_macs(config, size) == sum(macs) > 0
