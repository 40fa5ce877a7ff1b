"""flaseg.convert: PyTorch checkpoints load into flaseg with the same outputs.

The name tables, error listing, Orbax round trip, CLI and `train.init_pretrained` need numpy
only. The equivalence tests build the PyTorch networks (timm ResNets; mmseg 1.2.2
segmentors; FLANet, DenoisedNL and AttaNet in reference/torch/, from the official code),
randomise every weight and BN statistic, convert the state dict and compare outputs in eval
mode on an H != W input (batch 1). They skip without torch / timm / mmseg
(scripts/install_reference_packages.sh installs them).
"""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import convert, train
from flaseg.models import build_model, init_variables
from flaseg.models.heads.fla import FLAHead
from flaseg.models.resnet import ResNet
from flaseg.models.segmenter import IMAGENET_MEAN, IMAGENET_STD, Segmenter
from reference.torch import attanet, denoised_nl, flanet, mmseg_peers
from reference.torch.imports import declare_torchvision_ops
from torch_equivalence import randomise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def _variables(model, shape):
  params, state = jax.eval_shape(lambda r: init_variables(model, r, shape),
                                 jax.random.key(0))
  return {"params": params, **state}


def _fake_state_dict(target, source, backbone_cfg, part="backbone", rng=None):
  """A state dict in `source` naming with random values of the right (torch) shapes."""
  rng = rng or np.random.default_rng(0)
  sd = {}
  for (coll, *path), v in convert._flatten(target).items():
    path = tuple(path)
    if part == "backbone" and path[0] != "backbone":
      continue
    suffix, how = convert._tensor_names(path[:-1], path[-1], coll, len(v.shape))
    name = convert.torch_name(path[:-1] if suffix else path, source, backbone_cfg)
    name = f"{name}.{suffix}" if suffix else name
    shape = tuple(v.shape)
    if how == "conv":
      shape = (shape[3], shape[2], shape[0], shape[1])
    elif how == "linear":
      shape = shape[::-1]
    sd[name] = rng.standard_normal(shape).astype(np.float32)
  return sd


# ---------------------------------------------------------------------------------------
# numpy-only tests.

def test_names_of_every_backbone_source():
  cases = [("torchvision", dict(depth=50, stem="torchvision"), "conv1.weight",
            "layer1.0.downsample.0.weight"),
           ("timm", dict(depth=50, stem="v1c", avg_down=True), "conv1.6.weight",
            "layer2.0.downsample.1.weight"),
           ("mmseg", dict(depth=50, stem="v1c"), "stem.7.running_var",
            "layer4.2.conv3.weight"),
           ("flanet", dict(depth=101, stem="deep"), "conv1.6.weight", "layer3.22.bn3.bias")]
  for source, cfg, name1, name2 in cases:
    target = _variables(ResNet(**cfg, width=8), (1, 32, 32, 3))
    target = {c: {"backbone": t} for c, t in target.items()}
    sd = _fake_state_dict(target, source, cfg)
    assert name1 in sd and name2 in sd, (source, sorted(sd)[:10])
    out = convert.convert(sd, source, target, cfg, "backbone")
    k = out["params"]["backbone"]["stem_conv1"]["kernel"]
    assert k.shape == target["params"]["backbone"]["stem_conv1"]["kernel"].shape


def test_flanet_whole_model_names():
  model = Segmenter(ResNet(18, "deep", 8, width=8), FLAHead(3, channels=16, aux_channels=8))
  target = _variables(model, (1, 32, 48, 3))
  cfg = dict(stem="deep")
  sd = _fake_state_dict(target, "flanet", cfg, part="model")
  for name in ("conv.0.weight", "conv.4.running_mean", "fully.conv1.weight", "fully.gamma",
               "fully.conv.0.weight", "fully.conv.1.bias", "conv_out1.conv.1.weight",
               "conv_out3.conv.2.running_var", "conv_out2.conv.5.bias"):
    assert name in sd
  sd = {("" if k.split(".")[0] in ("conv", "fully", "conv_out1", "conv_out2", "conv_out3")
         else "backbone.") + k: v for k, v in sd.items()}
  assert convert.default_part(sd, "flanet") == "model"
  out = convert.convert(sd, "flanet", target, cfg, "model")
  assert out["params"]["head"]["fully"]["gamma"].shape == ()
  # Only the backbone of the same checkpoint.
  out = convert.convert(sd, "flanet", target, cfg, "backbone")
  assert set(out["params"]) == {"backbone"}


@pytest.mark.parametrize("source,config,names", [
    ("mmseg", "dnl", ["decode_head.dnl_block.g.conv.weight", "decode_head.conv_seg.bias",
                      "decode_head.dnl_block.conv_mask.weight", "auxiliary_head.convs.0.bn.bias",
                      "backbone.stem.6.weight", "backbone.layer3.1.conv2.weight"]),
    ("mmseg", "danet", ["decode_head.pam.gamma.scale", "decode_head.cam_conv_seg.weight"]),
    ("mmseg", "emanet", ["decode_head.ema_module.bases", "decode_head.ema_mid_conv.conv.bias"]),
    ("mmseg", "ccnet", ["decode_head.cca.query_conv.weight", "decode_head.cca.gamma.scale"]),
    ("denoised_nl", "denoised_nl", ["interp.0.weight", "down_sample.bn2.running_var",
                                    "dnl.gamma", "dnl.conv_out3.conv.4.bias",
                                    "conv_out1.conv.0.weight", "backbone.conv1.6.weight"]),
    ("attanet", "attanet", ["head.resnet.conv1.weight", "head.afm.bn_atten.running_mean",
                            "head.sam.conv3.conv.weight", "conv_out1.conv_out.weight"]),
])
def test_whole_model_names(source, config, names):
  """Names of a few tensors of each whole-model source (as in the official state dicts)."""
  sys.path.insert(0, REPO)
  import importlib
  c = importlib.import_module(f"configs.{config}_cityscapes").get_config("smoke=True")
  c.model.num_classes = 3
  target = convert.abstract_variables(c)
  cfg = dict(c.model.backbone)
  sd = _fake_state_dict(target, source, cfg, part="model")
  bb = convert._BACKBONE_PREFIX.get(source, "backbone.")
  backbone = _fake_state_dict(target, source, cfg)
  sd = {(bb + k if k in backbone else k): v for k, v in sd.items()}
  for name in names:
    assert name in sd, (name, sorted(sd)[:20])
  out = convert.convert(sd, source, target, cfg, convert.default_part(sd, source))
  assert set(out["params"]) == {"backbone", "head"}


def test_mismatches_are_listed_by_name():
  cfg = dict(depth=18, stem="torchvision")
  target = {c: {"backbone": t} for c, t in
            _variables(ResNet(**cfg, width=8), (1, 32, 32, 3)).items()}
  sd = _fake_state_dict(target, "torchvision", cfg)
  sd["fc.weight"] = np.zeros((10, 64), np.float32)  # classifier: skipped
  sd["layer1.0.bn1.num_batches_tracked"] = np.zeros((), np.int64)  # ignored
  del sd["layer2.0.conv1.weight"]
  sd["layer9.0.conv1.weight"] = np.zeros((1,), np.float32)
  sd["layer1.1.conv2.weight"] = np.zeros((8, 8, 1, 1), np.float32)
  with pytest.raises(convert.ConversionError) as e:
    convert.convert(sd, "torchvision", target, cfg, "backbone")
  msg = str(e.value)
  assert "missing in the checkpoint (1)" in msg and "layer2.0.conv1.weight" in msg
  assert "unexpected in the checkpoint (1)" in msg and "layer9.0.conv1.weight" in msg
  assert "wrong shape (1)" in msg and "layer1.1.conv2.weight" in msg
  assert "fc.weight" not in msg and "num_batches_tracked" not in msg


def test_readers_and_orbax_round_trip(tmp_path):
  sd = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
  np.savez(tmp_path / "sd.npz", **{"module." + k: v for k, v in sd.items()})
  np.testing.assert_array_equal(convert.read_state_dict(str(tmp_path / "sd.npz"))["a.weight"],
                                sd["a.weight"])
  with pytest.raises(FileNotFoundError):
    convert.read_state_dict(str(tmp_path / "absent.pth"))
  try:
    from safetensors.numpy import save_file
  except ImportError:
    save_file = None
  if save_file is not None:
    save_file(sd, str(tmp_path / "sd.safetensors"))
    got = convert.read_state_dict(str(tmp_path / "sd.safetensors"))
    np.testing.assert_array_equal(got["a.weight"], sd["a.weight"])

  params = {"backbone": {"c": {"kernel": jnp.zeros((2, 3))}}, "head": {"k": jnp.ones(4)}}
  state = {"batch_stats": {"backbone": {"bn": {"mean": jnp.zeros(3)}}}}
  loaded = {"params": {"backbone": {"c": {"kernel": np.full((2, 3), 2.0, np.float32)}}},
            "model_state": {"batch_stats": {"backbone": {"bn": {"mean": np.ones(3, np.float32)}}}}}
  path = convert.save_converted(loaded, str(tmp_path / "ckpt"))
  back = convert.load_converted(path)
  p, s = convert.merge(params, state, back, "backbone")
  np.testing.assert_array_equal(p["backbone"]["c"]["kernel"], 2.0)
  np.testing.assert_array_equal(p["head"]["k"], 1.0)
  np.testing.assert_array_equal(s["batch_stats"]["backbone"]["bn"]["mean"], 1.0)
  with pytest.raises(convert.ConversionError, match="missing in the checkpoint"):
    convert.merge(params, state, back, "")
  bad = {"params": {"backbone": {"c": {"kernel": np.zeros((3, 3), np.float32)}}},
         "model_state": {}}
  with pytest.raises(convert.ConversionError, match="backbone/c/kernel"):
    convert.merge(params, state, bad, "")


@pytest.mark.slow
def test_cli_and_training_init(tmp_path):
  """`python -m flaseg.convert` on an .npz, then `train.init_pretrained` loads it."""
  sys.path.insert(0, REPO)
  from configs import quickstart
  config = quickstart.get_config("smoke=True")
  config.model.num_classes = 5
  cfg = dict(config.model.backbone)
  model = build_model(config.model)
  shape = (1, *config.data.crop_size, 3)
  target = _variables(model, shape)
  sd = _fake_state_dict(target, "flanet", cfg)
  np.savez(tmp_path / "r.npz", **sd)
  out = tmp_path / "conv"
  cmd = [sys.executable, "-m", "flaseg.convert", "--source=flanet",
         f"--checkpoint={tmp_path / 'r.npz'}", f"--config={REPO}/configs/quickstart.py:smoke=True",
         "--config.model.num_classes=5", f"--out={out}"]
  res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-3000:]
  params, model_state = init_variables(model, jax.random.key(1), shape)
  state = train.TrainState(jnp.zeros((), jnp.int32), params, model_state, ())
  config.init.backbone = str(out)
  new = train.init_pretrained(config, state)
  np.testing.assert_allclose(new.params["backbone"]["layer1_0"]["conv1"]["kernel"],
                             sd["layer1.0.conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_allclose(new.model_state["batch_stats"]["backbone"]["stem_bn3"]["var"],
                             sd["bn1.running_var"])
  np.testing.assert_array_equal(new.params["head"]["conv_0"]["conv"]["kernel"],
                                params["head"]["conv_0"]["conv"]["kernel"])
  config.init.backbone = ""
  config.init.checkpoint = str(out)  # a backbone only: the head is missing
  with pytest.raises(convert.ConversionError, match="missing in the checkpoint"):
    train.init_pretrained(config, state)


# ---------------------------------------------------------------------------------------
# Equivalence with PyTorch.

def _import_torch():
  torch = pytest.importorskip("torch")
  torch.set_num_threads(2)
  return torch


def _import_timm(torch):
  declare_torchvision_ops(torch)  # timm imports torchvision
  return pytest.importorskip("timm")



def _state_dict(module):
  return {k: v.numpy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name,cfg", [
    ("resnet50", dict(depth=50, stem="torchvision", output_stride=32)),
    ("resnet101", dict(depth=101, stem="torchvision", output_stride=8, contract_dilation=True)),
    # Only at output stride 32: dilated, timm puts a 2x2 stride-1 AvgPool2dSame on the
    # shortcut of layer3/layer4, which flaseg's avg_down (mmseg ResNetV1d) does not.
    ("resnet50d", dict(depth=50, stem="v1c", avg_down=True, output_stride=32)),
])
def test_timm_resnets_equal_pytorch(name, cfg):
  torch = _import_torch()
  timm = _import_timm(torch)
  os_ = cfg["output_stride"]
  net = timm.create_model(name, pretrained=False, num_classes=0,
                          **({} if os_ == 32 else {"output_stride": os_}))
  randomise(torch, net)
  x = np.random.default_rng(1).standard_normal((1, 3, 40, 56)).astype(np.float32)
  with torch.no_grad():
    y = net.maxpool(net.act1(net.bn1(net.conv1(torch.from_numpy(x)))))
    ref = {}
    for s in range(4):
      y = getattr(net, f"layer{s + 1}")(y)
      ref[f"c{s + 2}"] = y.numpy().transpose(0, 2, 3, 1)

  model = ResNet(**cfg)
  target = {c: {"backbone": t} for c, t in _variables(model, (1, 40, 56, 3)).items()}
  v = convert.convert(_state_dict(net), "timm", target, cfg, "backbone")
  out = model.apply({"params": v["params"]["backbone"],
                     "batch_stats": v["model_state"]["batch_stats"]["backbone"]},
                    jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
  for k in ref:
    assert out[k].shape == ref[k].shape, k
    rel = _rel(out[k], ref[k])
    print(f"{name} {k}: max relative difference {rel:.2e}")
    assert rel < TOL, (k, rel)


@pytest.mark.parametrize("depth", [18, 50])
def test_flanet_equals_pytorch(tmp_path, depth):
  """The official FLANet definition (reference.torch.flanet) with BasicBlocks (the released
  code) and Bottlenecks (the R50/R101 of the paper), at batch 2 with its FLA block pairing each
  column with its own sample (`per_sample=True`; the official `.repeat`, which mixes samples,
  is checked against flaseg's block in test_heads_paper.py)."""
  torch = _import_torch()
  F = torch.nn.functional
  width, channels, aux, k = (16, 32, 8, 5) if depth == 18 else (8, 16, 8, 5)
  net = randomise(torch, flanet.flanet(depth, k, width, channels, aux, per_sample=True))
  img = np.random.default_rng(2).uniform(0, 255, (2, 48, 72, 3)).astype(np.float32)
  x = (img - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
  with torch.no_grad():
    outs = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    ref = {key: F.interpolate(t, img.shape[1:3], mode="bilinear", align_corners=True)
           .numpy().transpose(0, 2, 3, 1) for key, t in outs.items()}

  # Through a .pth file and the reader, as the CLI does.
  torch.save(net.state_dict(), tmp_path / "flanet.pth")
  sd = convert.read_state_dict(str(tmp_path / "flanet.pth"))
  cfg = dict(depth=depth, stem="deep", output_stride=8, width=width)
  model = Segmenter(ResNet(**cfg), FLAHead(k, channels=channels, aux_channels=aux),
                    align_corners=True)
  target = _variables(model, img.shape)
  assert convert.default_part(sd, "flanet") == "model"
  v = convert.convert(sd, "flanet", target, cfg, "model")
  out = model.apply({"params": v["params"], **v["model_state"]}, jnp.asarray(img))
  assert sorted(ref) == ["aux1", "aux2", "out"]
  for key, r in ref.items():
    rel = _rel(out[key], r)
    print(f"flanet-{depth} {key}: max relative difference {rel:.2e}")
    assert rel < TOL, (key, rel)


def _import_mmseg(torch):
  pytest.importorskip("mmseg")
  pytest.importorskip("mmcv")
  return mmseg_peers.import_mmseg(torch)


_K = 5
# head -> (flaseg head_kwargs, mmseg decode_head fields); backbone width 16 (c4 256, c5 512).
_MMSEG_HEADS = {
    "fcn": (dict(channels=32, num_convs=2, concat_input=True),
            dict(type="FCNHead", channels=32, num_convs=2, concat_input=True)),
    "nl": (dict(channels=32, reduction=2, use_scale=True),
           dict(type="NLHead", channels=32, reduction=2, use_scale=True,
                mode="embedded_gaussian")),
    "dnl": (dict(channels=32, reduction=2, use_scale=True, temperature=0.05),
            dict(type="DNLHead", channels=32, reduction=2, use_scale=True, temperature=0.05,
                 mode="embedded_gaussian")),
    "danet": (dict(channels=32, pam_channels=8),
              dict(type="DAHead", channels=32, pam_channels=8)),
    "ccnet": (dict(channels=32, recurrence=2),
              dict(type="CCHead", channels=32, recurrence=2, concat_input=True)),
    "emanet": (dict(channels=16, ema_channels=32, num_bases=8, num_stages=3),
               dict(type="EMAHead", channels=16, ema_channels=32, num_bases=8, num_stages=3,
                    momentum=0.1, concat_input=True)),
    "isanet": (dict(channels=32, isa_channels=16, down_factor=(4, 4)),
               dict(type="ISAHead", channels=32, isa_channels=16, down_factor=(4, 4))),
}


@pytest.mark.parametrize("head", sorted(_MMSEG_HEADS))
def test_mmseg_networks_equal_pytorch(head):
  torch = _import_torch()
  models = _import_mmseg(torch)
  F = torch.nn.functional
  flaseg_kwargs, mm_head = _MMSEG_HEADS[head]
  norm = dict(type="BN", requires_grad=True)
  net = models.build(dict(
      type="EncoderDecoder",
      backbone=dict(type="ResNetV1c", depth=50, base_channels=16, stem_channels=16,
                    num_stages=4, out_indices=(0, 1, 2, 3), dilations=(1, 1, 2, 4),
                    strides=(1, 2, 1, 1), norm_cfg=norm, style="pytorch",
                    contract_dilation=True),
      decode_head=dict(in_channels=512, in_index=3, dropout_ratio=0.1, num_classes=_K,
                       norm_cfg=norm, align_corners=True, **mm_head),
      auxiliary_head=dict(type="FCNHead", in_channels=256, in_index=2, channels=16,
                          num_convs=1, concat_input=False, dropout_ratio=0.1,
                          num_classes=_K, norm_cfg=norm, align_corners=True),
      train_cfg=dict(), test_cfg=dict(mode="whole")))
  randomise(torch, net)
  img = np.random.default_rng(3).uniform(0, 255, (1, 64, 80, 3)).astype(np.float32)
  x = (img - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
  with torch.no_grad():
    feats = net.extract_feat(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    outs = {"out": net.decode_head(feats), "aux": net.auxiliary_head(feats)}
    if isinstance(outs["out"], (tuple, list)):  # DAHead: (pam_cam, pam, cam)
      outs["out"], outs["pam"], outs["cam"] = outs["out"]
    ref = {k: F.interpolate(v, img.shape[1:3], mode="bilinear", align_corners=True)
           .numpy().transpose(0, 2, 3, 1) for k, v in outs.items()}

  sys.path.insert(0, REPO)
  import importlib
  config = importlib.import_module(f"configs.{head}_cityscapes").get_config()
  config.model.num_classes = _K
  config.model.backbone.width = 16
  config.model.head_kwargs.update(dict(aux_channels=16, **flaseg_kwargs))
  config.data.crop_size = img.shape[1:3]
  # The benchmark's peer (mmseg_peers.mmseg_segmentor) builds this same network from the
  # flaseg config: the same modules and shapes (strict load), the same outputs.
  built = mmseg_peers.mmseg_segmentor(config)
  built.load_state_dict(net.state_dict())
  with torch.no_grad():
    got = mmseg_peers.mmseg_outputs(built.eval(), torch.from_numpy(
        x.transpose(0, 3, 1, 2).copy()), train=False)["out"]
  np.testing.assert_allclose(F.interpolate(got, img.shape[1:3], mode="bilinear",
                                           align_corners=True).numpy().transpose(0, 2, 3, 1),
                             ref["out"], rtol=1e-5, atol=1e-5)
  model = build_model(config.model)
  v = convert.convert(_state_dict(net), "mmseg", convert.abstract_variables(config),
                      config.model.backbone, "model")
  out = model.apply({"params": v["params"], **v["model_state"]}, jnp.asarray(img))
  for key, r in ref.items():
    rel = _rel(out[key], r)
    print(f"mmseg {head} {key}: max relative difference {rel:.2e}")
    assert rel < TOL, (key, rel)


def test_denoised_nl_equals_pytorch():
  torch = _import_torch()
  width, channels, aux, gr, k = 8, 32, 8, 16, 5
  net = randomise(torch, denoised_nl.denoised_nl(torch, width, channels, aux, gr, k))
  img = np.random.default_rng(4).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
  x = (img - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
  with torch.no_grad():
    ref = [t.numpy().transpose(0, 2, 3, 1)
           for t in net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))]
  sd = _state_dict(net)
  assert "down_sample.downsample.0.weight" in sd and "interp.0.weight" in sd
  sys.path.insert(0, REPO)
  from configs import denoised_nl_cityscapes
  config = denoised_nl_cityscapes.get_config()
  config.model.num_classes = k
  config.model.backbone.update(dict(depth=50, width=width))
  config.model.head_kwargs.update(dict(channels=channels, aux_channels=aux, gr_channels=gr))
  config.data.crop_size = img.shape[1:3]
  model = build_model(config.model)
  v = convert.convert(sd, "denoised_nl", convert.abstract_variables(config),
                      config.model.backbone, convert.default_part(sd, "denoised_nl"))
  out = model.apply({"params": v["params"], **v["model_state"]}, jnp.asarray(img))
  for key, r in zip(("out", "aux1", "aux2"), ref):
    rel = _rel(out[key], r)
    print(f"denoised_nl {key}: max relative difference {rel:.2e}")
    assert rel < TOL, (key, rel)


def test_attanet_equals_pytorch():
  torch = _import_torch()
  declare_torchvision_ops(torch)
  torchvision = pytest.importorskip("torchvision")
  k = 5
  net = randomise(torch, attanet.attanet(torch, torchvision, k))
  img = np.random.default_rng(5).uniform(0, 255, (1, 128, 160, 3)).astype(np.float32)
  x = (img - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
  with torch.no_grad():
    ref = [t.numpy().transpose(0, 2, 3, 1)
           for t in net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))]
  sd = _state_dict(net)
  assert "head.resnet.fc.weight" in sd  # the ImageNet classifier is skipped
  sys.path.insert(0, REPO)
  from configs import attanet_cityscapes
  config = attanet_cityscapes.get_config()
  config.model.num_classes = k
  config.data.crop_size = img.shape[1:3]
  model = build_model(config.model)
  v = convert.convert(sd, "attanet", convert.abstract_variables(config),
                      config.model.backbone, convert.default_part(sd, "attanet"))
  out = model.apply({"params": v["params"], **v["model_state"]}, jnp.asarray(img))
  for key, r in zip(("out", "aux1", "aux2"), ref):
    rel = _rel(out[key], r)
    print(f"attanet {key}: max relative difference {rel:.2e}")
    assert rel < TOL, (key, rel)
