"""flaseg.convert: PyTorch checkpoints load into flaseg with the same outputs.

The name tables, error listing, Orbax round trip, CLI and `train._init_pretrained` need numpy
only. The equivalence tests build the PyTorch networks (timm ResNets; mmseg 1.2.2
segmentors; FLANet, DenoisedNL and AttaNet written here from the official code's semantics),
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

from flaseg import convert, torch_reference, train
from flaseg.models import build_model
from flaseg.models.heads.fla import FLAHead
from flaseg.models.resnet import ResNet
from flaseg.models.segmenter import IMAGENET_MEAN, IMAGENET_STD, Segmenter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def _variables(model, shape):
  params, state = jax.eval_shape(lambda r: train.init_variables(model, r, shape),
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
  path = convert.save(loaded, str(tmp_path / "ckpt"))
  back = convert.load(path)
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


def test_cli_and_training_init(tmp_path):
  """`python -m flaseg.convert` on an .npz, then `_init_pretrained` loads it."""
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
  params, model_state = train.init_variables(model, jax.random.key(1), shape)
  state = train.TrainState(jnp.zeros((), jnp.int32), params, model_state, ())
  config.init.backbone = str(out)
  new = train._init_pretrained(config, state)
  np.testing.assert_allclose(new.params["backbone"]["layer1_0"]["conv1"]["kernel"],
                             sd["layer1.0.conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_allclose(new.model_state["batch_stats"]["backbone"]["stem_bn3"]["var"],
                             sd["bn1.running_var"])
  np.testing.assert_array_equal(new.params["head"]["conv_0"]["conv"]["kernel"],
                                params["head"]["conv_0"]["conv"]["kernel"])
  config.init.backbone = ""
  config.init.checkpoint = str(out)  # a backbone only: the head is missing
  with pytest.raises(convert.ConversionError, match="missing in the checkpoint"):
    train._init_pretrained(config, state)


# ---------------------------------------------------------------------------------------
# Equivalence with PyTorch.

def _import_torch():
  torch = pytest.importorskip("torch")
  torch.set_num_threads(2)
  return torch


def _import_timm(torch):
  torch_reference.declare_torchvision_ops(torch)  # timm imports torchvision
  return pytest.importorskip("timm")


def _randomise(torch, module, seed=0):
  """Random weights and BN statistics (so that a wrong mean/var mapping shows)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in module.state_dict().items():
      if not t.is_floating_point():
        continue
      if "gamma" in name:  # attention residual scales (torch zeros at init)
        t.copy_(torch.randn(t.shape, generator=g) * 0.1 + 0.5)
      elif name.endswith("running_var"):
        t.copy_(torch.rand(t.shape, generator=g) + 0.5)
      elif name.endswith("running_mean") or name.endswith("bias"):
        t.copy_(torch.randn(t.shape, generator=g) * 0.1)
      elif t.ndim == 1:  # BN weight
        t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
      else:
        fan_in = t[0].numel()
        t.copy_(torch.randn(t.shape, generator=g) / fan_in ** 0.5)
  return module.eval()


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
  _randomise(torch, net)
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
  """The official FLANet definition (flaseg.torch_reference, also the benchmark's peer) with
  BasicBlocks (the released code) and Bottlenecks (the R50/R101 of the paper)."""
  torch = _import_torch()
  F = torch.nn.functional
  width, channels, aux, k = (16, 32, 8, 5) if depth == 18 else (8, 16, 8, 5)
  net = _randomise(torch, torch_reference.flanet(depth, k, width, channels, aux))
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
  return torch_reference.import_mmseg(torch)


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
  _randomise(torch, net)
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
  # The benchmark's peer (torch_reference.mmseg_segmentor) builds this same network from the
  # flaseg config: the same modules and shapes (strict load), the same outputs.
  built = torch_reference.mmseg_segmentor(config)
  built.load_state_dict(net.state_dict())
  with torch.no_grad():
    got = torch_reference.mmseg_outputs(built.eval(), torch.from_numpy(
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


def _torch_denoised_nl(torch, width, channels, aux_channels, gr_channels, num_classes):
  """DenoisedNL (official model.py semantics: deep-stem ResNet-50 of Bottlenecks at output
  stride 8 with layer4 dilations (4, 8, 16), conv -> down_sample (BasicBlock, shortcut
  `interp`) -> DNL with the global rectifier and local retention -> outputs), its names."""
  nn, F = torch.nn, torch.nn.functional

  def cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())

  def Output(cin, mid):  # noqa: N802 (official Output: no upsampling, dropout 0.05)
    return torch_reference.output_head(cin, mid, num_classes, 0.05, upsample=False)

  class DownSample(nn.Module):
    def __init__(self, c, interp):
      super().__init__()
      self.conv1 = nn.Conv2d(c, c, 3, 2, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(c)
      self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(c)
      self.downsample = interp

    def forward(self, x):
      y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
      return F.relu(y + self.downsample(x))

  class DNL(nn.Module):
    def __init__(self, c, c4):
      super().__init__()
      self.conv1 = nn.Conv2d(c, c // 8, 1, bias=False)
      self.conv2 = nn.Conv2d(c, c // 8, 1, bias=False)
      self.conv3 = nn.Conv2d(c, c, 1, bias=False)
      self.conv = cbr(c, c)
      self.conv_out3 = Output(c4, gr_channels)
      self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x, x2):
      b, _, h, w = x.shape
      q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
      e = q.shape[1]
      # Local relation: sigmoid(q . k) over each 3x3 neighbourhood (zero padded).
      k_patches = F.unfold(k, 3, padding=1).view(b, e, 9, h * w).permute(0, 3, 1, 2)
      local = torch.sigmoid(torch.matmul(q.permute(0, 2, 3, 1).reshape(b * h * w, 1, e),
                                         k_patches.reshape(b * h * w, e, 9)))
      qf = q.view(b, e, h * w).permute(0, 2, 1)
      relation = torch.softmax(torch.matmul(qf, k.view(b, e, h * w)), -1)
      aux2 = self.conv_out3(x2)
      pred = F.interpolate(aux2, (h, w), mode="bilinear", align_corners=True)
      pred = torch.softmax(pred, 1).view(b, num_classes, -1)
      relation = relation * torch.sigmoid(torch.matmul(pred.permute(0, 2, 1), pred))
      relation = F.unfold(relation.view(b, h * w, h, w), 3, padding=1).view(b, h * w, 9, h * w)
      local = local.view(b, h * w, 9).permute(0, 2, 1)
      aug_relation = (relation * local.unsqueeze(1)).sum(2)
      vf = v.view(b, -1, h * w).permute(0, 2, 1)
      aug = torch.bmm(aug_relation, vf).view(b, h, w, -1).permute(0, 3, 1, 2)
      out = F.interpolate(self.gamma * aug + x, (2 * h, 2 * w), mode="bilinear",
                          align_corners=True)
      return self.conv(out), aux2

  class DenoisedNL(nn.Module):
    def __init__(self):
      super().__init__()
      c5, c4, c3 = 32 * width, 16 * width, 8 * width
      # Deep stem, Bottlenecks, layer4 multi-grid (1, 2, 4) x dilation 4.
      self.backbone = torch_reference.deep_stem_resnet(50, width, multi_grid=(1, 2, 4))
      self.conv = cbr(c5, channels)
      self.interp = cbr(channels, channels, 2)
      self.down_sample = DownSample(channels, self.interp)
      self.dnl = DNL(channels, c4)
      self.conv_out1 = Output(c5 + channels, channels)
      self.conv_out2 = Output(c3, aux_channels)

    def forward(self, x):
      h, w = x.shape[2:]
      x1, x2, x3 = self.backbone(x)
      f, aux2 = self.dnl(self.down_sample(self.conv(x3)), x2)
      out = self.conv_out1(torch.cat([x3, f], 1))
      up = lambda t: F.interpolate(t, (h, w), mode="bilinear", align_corners=True)
      return up(out), up(self.conv_out2(x1)), up(aux2)

  return DenoisedNL()


def test_denoised_nl_equals_pytorch():
  torch = _import_torch()
  width, channels, aux, gr, k = 8, 32, 8, 16, 5
  net = _randomise(torch, _torch_denoised_nl(torch, width, channels, aux, gr, k))
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


def _torch_attanet(torch, torchvision, num_classes):
  """AttaNet (official AttaNet.py semantics; torchvision ResNet-18 as `head.resnet`)."""
  nn, F = torch.nn, torch.nn.functional

  class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, ks=3):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, ks, 1, ks // 2, bias=False)
      self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  class Output(nn.Module):
    def __init__(self, cin, mid):
      super().__init__()
      self.conv = ConvBNReLU(cin, mid)
      self.conv_out = nn.Conv2d(mid, num_classes, 1, bias=False)

    def forward(self, x):
      return self.conv_out(self.conv(x))

  class SAM(nn.Module):
    def __init__(self, c):
      super().__init__()
      self.conv1, self.conv2 = ConvBNReLU(c, 64, 1), ConvBNReLU(c, 64, 1)
      self.conv3 = ConvBNReLU(c, c, 1)

    def forward(self, x):
      q = self.conv1(x)
      b, cm, h, w = q.shape
      q = F.avg_pool2d(q, [h, 1]).view(b, cm, -1).permute(0, 2, 1)
      a = torch.softmax(torch.bmm(q, self.conv2(x).view(b, cm, -1)), 1)
      v = F.avg_pool2d(self.conv3(x), [h, 1]).view(b, x.shape[1], -1)
      return x + torch.bmm(v, a).view(b, x.shape[1], h, w)

  class AFM(nn.Module):
    def __init__(self, cin, cout):
      super().__init__()
      self.conv = ConvBNReLU(cin, cout, 1)
      self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
      self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, f16, f32):
      up = F.interpolate(f32, f16.shape[2:], mode="nearest")
      feat = self.conv(torch.cat([f16, up], 1))
      return torch.sigmoid(self.bn_atten(self.conv_atten(F.avg_pool2d(feat, feat.shape[2:]))))

  class Head(nn.Module):
    def __init__(self):
      super().__init__()
      self.resnet = torchvision.models.resnet18()
      self.afm = AFM(640, 128)
      self.conv_head32 = ConvBNReLU(512, 128)
      self.conv_head16 = ConvBNReLU(256, 128)
      self.conv_head1 = ConvBNReLU(128, 128)
      self.sam = SAM(128)
      self.conv_head2 = ConvBNReLU(128, 128)

    def forward(self, x):
      r = self.resnet
      x = r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))
      f8 = r.layer2(x)
      f16 = r.layer3(f8)
      f32 = r.layer4(f16)
      f16 = self.conv_head16(f16)
      atten = self.afm(f16, f32)
      f32_up = F.interpolate(self.conv_head32(f32) * atten, f16.shape[2:], mode="nearest")
      fused = self.sam(self.conv_head1(f16 * (1 - atten) + f32_up))
      out8 = self.conv_head2(F.interpolate(fused, f8.shape[2:], mode="nearest"))
      return out8, f32_up, f8

  class AttaNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.head = Head()
      self.conv_out = Output(128, 128)
      self.conv_out1 = Output(128, 64)
      self.conv_out2 = Output(128, 64)

    def forward(self, x):
      h, w = x.shape[2:]
      out, aux1, aux2 = self.head(x)
      up = lambda t: F.interpolate(t, (h, w), mode="bilinear", align_corners=True)
      return up(self.conv_out(out)), up(self.conv_out1(aux1)), up(self.conv_out2(aux2))

  return AttaNet()


def test_attanet_equals_pytorch():
  torch = _import_torch()
  torch_reference.declare_torchvision_ops(torch)
  torchvision = pytest.importorskip("torchvision")
  k = 5
  net = _randomise(torch, _torch_attanet(torch, torchvision, k))
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
