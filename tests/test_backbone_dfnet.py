"""DF1 / DF2 (flaseg/models/dfnet.py) and AttaNet's light model (models/attanet_light.py +
heads/attanet_light.py) against PyTorch transcriptions of the original files
(reference/torch/dfnet.py: SFSegNets dfnet.py; reference/torch/attanet_light.py: AttaNet
light.py + AttaNet_light.py), with random weights and BN statistics, converted by
flaseg.convert; and each backbone's feature_spec against what it returns."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaseg import config_lib, convert
from flaseg.errors import ConfigError
from flaseg.models import BACKBONES, build_model
from flaseg.models.attanet_light import AttaNetLightBackbone
from flaseg.models.dfnet import DFNet

from reference.torch import attanet_light as ref_light
from reference.torch import dfnet as ref_dfnet
from torch_equivalence import import_torch, randomise, rel_diff

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOL = 1e-5
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255





def _config(name, num_classes, crop):
  c = config_lib.load(os.path.join(REPO, "configs", f"attanet_{name}_cityscapes.py"))
  c.model.num_classes = num_classes
  c.data.crop_size = crop
  return c


@pytest.mark.parametrize("backbone", [DFNet(variant="df1"), DFNet(variant="df2"),
                                      DFNet(variant="df2", width=8), AttaNetLightBackbone(),
                                      AttaNetLightBackbone(width=4)])
def test_feature_spec_is_what_it_returns(backbone):
  x = jax.ShapeDtypeStruct((2, 64, 96, 3), jnp.float32)
  feats = jax.eval_shape(lambda v: backbone.init_with_output(jax.random.key(0), v)[0], x)
  spec = backbone.feature_spec()
  assert sorted(spec) == sorted(feats)
  for name, (stride, channels) in spec.items():
    assert feats[name].shape == (2, 64 // stride, 96 // stride, channels), name


def test_registered_and_unknown_variant_is_one_line():
  assert BACKBONES["dfnet"] is DFNet and BACKBONES["attanet_light"] is AttaNetLightBackbone
  assert DFNet(variant="df1").feature_spec() == {"c3": (8, 64), "c4": (16, 128),
                                                 "c5": (32, 512)}
  assert DFNet(variant="df2").feature_spec() == {"c3": (8, 128), "c4": (16, 256),
                                                 "c5": (32, 512)}
  c = _config("df2", 19, (64, 64))
  c.model.backbone.variant = "df3"
  with pytest.raises(ConfigError, match=r"model.backbone.variant='df3': choose one of "
                                        r"\['df1', 'df2'\]"):
    build_model(c.model)


@pytest.mark.parametrize("variant", ["df1", "df2"])
def test_dfnet_equals_pytorch(variant):
  torch = import_torch()
  net = randomise(torch, ref_dfnet.dfnet(torch, variant))
  taps = {}
  if variant == "df1":  # dfnet.py's DF1 returns stage3..5; flaseg's c3 is stage2's output
    net.stage2.register_forward_hook(lambda m, i, o: taps.__setitem__("stage2", o))
  x = np.random.default_rng(1).standard_normal((1, 3, 96, 160)).astype(np.float32)
  with torch.no_grad():
    outs = net(torch.from_numpy(x))
  if variant == "df1":
    ref = {"c3": taps["stage2"], "c4": outs[0], "c5": outs[2]}
  else:
    ref = dict(zip(("c3", "c4", "c5"), outs))
  sd = {k: v.numpy() for k, v in net.state_dict().items()}
  config = _config(variant, 19, (96, 160))
  v = convert.convert(sd, "dfnet", convert.abstract_variables(config), config.model.backbone,
                      part="backbone")
  backbone = DFNet(variant=variant)
  got = backbone.apply({"params": v["params"]["backbone"],
                        "batch_stats": v["model_state"]["batch_stats"]["backbone"]},
                       jnp.asarray(x.transpose(0, 2, 3, 1)))
  assert sorted(got) == sorted(ref)
  for key, r in ref.items():
    r = r.numpy().transpose(0, 2, 3, 1)
    assert got[key].shape == r.shape, key
    rel = rel_diff(got[key], r)
    print(f"{variant} {key} {r.shape}: max relative difference {rel:.2e}")
    assert rel <= TOL, (key, rel)


def test_attanet_light_equals_pytorch():
  torch = import_torch()
  k = 5
  net = randomise(torch, ref_light.attanet_light(torch, k))
  img = np.random.default_rng(5).uniform(0, 255, (1, 128, 192, 3)).astype(np.float32)
  x = (img - IMAGENET_MEAN) / IMAGENET_STD
  with torch.no_grad():
    ref = [t.numpy().transpose(0, 2, 3, 1)
           for t in net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))]
  sd = {k_: v.numpy() for k_, v in net.state_dict().items()}
  config = _config("light", k, img.shape[1:3])
  assert convert.default_part(sd, "attanet_light") == "model"
  v = convert.convert(sd, "attanet_light", convert.abstract_variables(config),
                      config.model.backbone, "model")
  model = build_model(config.model)
  out = model.apply({"params": v["params"], **v["model_state"]}, jnp.asarray(img))
  # Backbone alone, from the same whole-model checkpoint (part='backbone').
  vb = convert.convert(sd, "attanet_light", convert.abstract_variables(config),
                       config.model.backbone, "backbone")
  np.testing.assert_array_equal(vb["params"]["backbone"]["S3_3"]["conv"]["kernel"],
                                v["params"]["backbone"]["S3_3"]["conv"]["kernel"])
  for key, r in zip(("out", "aux1", "aux2"), ref):
    assert out[key].shape == r.shape, key
    rel = rel_diff(out[key], r)
    print(f"attanet_light {key}: max relative difference {rel:.2e}")
    assert rel <= TOL, (key, rel)
