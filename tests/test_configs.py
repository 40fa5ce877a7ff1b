"""Every config file loads with its default and `smoke` args, names a known head, dataset and
loss output, and its smoke version builds a model whose outputs match the loss weights; the
smoke widths, the config parts and the config args."""
import glob
import os

import jax
import jax.numpy as jnp
import pytest

from flaseg import config_lib, data
from flaseg.models import BACKBONES, HEADS, build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
STUDY = [f"configs/study.py:head={h}" for h in (
    "fcn", "fla", "nl", "channel_nl", "danet", "cs_nl", "dnl", "denoised_nl", "reconet",
    "emanet", "isanet", "ccnet", "attanet", "sanet")]  # configs/study.py HEADS
ABLATION_BLOCKS = ("none", "channel_nl", "spatial_nl", "dual_nl", "cs_nl", "ema", "rcca", "fla")
ABLATION = [f"configs/fla_ablation.py:block={b}" for b in ABLATION_BLOCKS] + [
    f"configs/fla_ablation.py:block=none,backbone={b}" for b in ("resnet18", "resnet101",
                                                                 "shufflenet")]


def _smoke(path):
  return config_lib.load(f"{path}{',' if ':' in path else ':'}smoke")


@pytest.mark.parametrize("path", CONFIGS + STUDY + ABLATION)
def test_config_loads_and_smoke_builds(path, monkeypatch):
  monkeypatch.chdir(REPO)
  full = config_lib.load(path)
  assert full.model.head in HEADS and full.data.name in data.DATASETS
  smoke = _smoke(path)
  # configs/fla_folder.py:smoke keeps its folder (a user's data); the rest use synthetic data.
  assert smoke.data.name == ("folder" if path == "configs/fla_folder.py" else "synthetic")
  assert smoke.train.steps <= 10
  smoke.model.num_classes = 9
  model = build_model(smoke.model)
  x = jnp.zeros((2, 32, 48, 3), jnp.uint8)
  out = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
  assert set(full.loss.weights) <= set(out), (set(full.loss.weights), set(out))
  assert out["out"].shape == (2, 32, 48, 9)


# The `:smoke` head kwargs of every config, as each config file spelled them out before
# config_lib.SMOKE_HEAD_KWARGS: the table must keep giving exactly these networks.
SMOKE_HEAD_KWARGS = {
    "attanet": dict(channels=16, qk_channels=8, out_channels=16, aux_channels=8),
    "attanet_light": dict(channels=16, qk_channels=8, out_channels=16, aux_channels=8),
    "ccnet": dict(channels=16, recurrence=2, aux_channels=8),
    "channel_nl": dict(channels=16, aux_channels=8),
    "cs_nl": dict(channels=16, aux_channels=8),
    "danet": dict(channels=16, pam_channels=4, aux_channels=8),
    "denoised_nl": dict(channels=16, aux_channels=8, gr_channels=8),
    "dnl": dict(channels=16, reduction=2, use_scale=True, temperature=0.05, aux_channels=8),
    "emanet": dict(channels=16, ema_channels=8, num_bases=4, num_stages=3, momentum=0.1,
                   aux_channels=8),
    "fcn": dict(channels=16, num_convs=2, concat_input=True, aux_channels=8),
    "fla": dict(channels=16, aux_channels=8),
    "isanet": dict(channels=16, isa_channels=8, down_factor=(8, 8), aux_channels=8),
    "nl": dict(channels=16, reduction=2, use_scale=True, aux_channels=8),
    "reconet": dict(channels=16, rank=4, profile_size=8, aux_channels=8),
    "sanet": dict(aux_channels=8),
}


# Configs whose head is wired differently from its head's usual config (HRNet's 'concat').
SMOKE_HEAD_KWARGS_OF = {
    "configs/fcn_hrnet48_cityscapes.py": dict(channels=16, num_convs=1, concat_input=False,
                                              kernel=1, dropout=0.0, in_key="concat"),
    "configs/fla_hrnet48.py": dict(channels=16, in_key="concat", upsample=False,
                                   aux_keys=("concat",), aux_channels=8, aux_kernel=1),
}
SMOKE_HEAD_KWARGS_OF["configs/fcn_hrnet48_ade20k.py"] = SMOKE_HEAD_KWARGS_OF[
    "configs/fcn_hrnet48_cityscapes.py"]
for _path in ["configs/fla_ablation.py"] + ABLATION:
  _block = _path.partition("block=")[2].partition(",")[0] or "fla"
  SMOKE_HEAD_KWARGS_OF[_path] = dict(block_type=_block, channels=16, aux_channels=8)


@pytest.mark.parametrize("path", CONFIGS + STUDY + ABLATION)
def test_smoke_head_kwargs_are_the_tiny_networks(path, monkeypatch):
  monkeypatch.chdir(REPO)
  smoke = _smoke(path)
  want = SMOKE_HEAD_KWARGS_OF.get(path, SMOKE_HEAD_KWARGS.get(smoke.model.head))
  assert smoke.model.head_kwargs.to_dict() == want
  backbone = smoke.model.backbone
  if backbone.get("name", "resnet") == "resnet":
    assert backbone.width == 8 and backbone.depth in (18, 50)
  else:
    assert {k: backbone[k] for k in BACKBONES[backbone.name].SMOKE_FIELDS} == (
        BACKBONES[backbone.name].SMOKE_FIELDS)


def test_smoke_keeps_a_switched_off_branch_off():
  c = config_lib.base_config()
  c.model.head = "fcn"
  c.model.head_kwargs = dict(channels=512, aux_channels=0)  # no aux head
  config_lib.apply_smoke(c)
  assert c.model.head_kwargs.to_dict() == dict(channels=16, aux_channels=0)


def test_dataset_parts_and_recipes_compose():
  c = config_lib.base_config()
  config_lib.ade20k(c)
  config_lib.flanet_recipe(c, epochs=240, dataset_size=20210)
  assert (c.data.name, c.model.num_classes, c.train.steps) == ("ade20k", 150, 606300)
  assert c.data.crop_size == c.eval.crop_size == (520, 520) and c.eval.flip
  # A recipe that tests differently overrides the dataset's usual test.
  config_lib.cityscapes(c)
  config_lib.mmseg_recipe(c)
  # mmseg's Cityscapes test Resize((2049, 1025), keep_ratio), scored at the original size.
  assert c.data.name == "cityscapes" and c.data.eval_resize == (1025, 2049)
  assert c.eval.original_labels
  assert (c.eval.crop_size, c.eval.scales, c.eval.flip) == ((769, 769), (1.0,), False)
  # Iterations round up: 3 epochs of 10 images at batch 8 are 30 / 8 -> 4 steps.
  assert config_lib.flanet_recipe(config_lib.base_config(), 3, 10).train.steps == 4


def test_base_config_has_one_ignore_label_and_per_batch_eval_padding():
  c = config_lib.base_config()
  assert "ignore_label" not in c.loss and c.data.ignore_label == 255
  assert c.eval.pad_to == (0, 0)


def test_parse_arg_reads_booleans_ints_and_strings():
  parse = lambda arg: config_lib.parse_arg(arg, smoke=False, steps=10, lr=0.1, head="fla")
  assert parse("").smoke is False and parse(None).head == "fla"
  assert parse("smoke").smoke is True
  for value, expected in (("False", False), ("false", False), ("0", False), ("TRUE", True),
                          ("true", True), ("1", True)):
    assert parse(f"smoke={value}").smoke is expected, value
  arg = parse("steps=3,lr=0.5,head=nl")
  assert (arg.steps, arg.lr, arg.head) == (3, 0.5, "nl")
  for bad, match in (("smoke=yes?", "smoke='yes\\?': expected true/false/1/0"),
                     ("steps=3.5", "steps='3.5': expected int"),
                     ("lr=fast", "lr='fast': expected float"),
                     ("head", "'head' needs a value"),
                     ("smok", "'smok': known args are")):
    with pytest.raises(ValueError, match=match) as e:
      parse(bad)
    assert "\n" not in str(e.value)


def test_config_file_args():
  quickstart = os.path.join(REPO, "configs/quickstart.py")
  full = config_lib.load(quickstart)
  assert config_lib.load(f"{quickstart}:smoke=False").to_dict() == full.to_dict()
  assert config_lib.load(f"{quickstart}:smoke=true").to_dict() == _smoke(quickstart).to_dict()
  with pytest.raises(ValueError, match="'smok'"):
    config_lib.load(f"{quickstart}:smok")
  with pytest.raises(ValueError, match="smoke='yes\\?'"):
    config_lib.load(f"{quickstart}:smoke=yes?")


def test_fla_ablation_args():
  """configs/fla_ablation.py: its block list is the head's, every block is FLANet's recipe and
  head around it (block=fla: the fla_cityscapes network at ResNet-50), bad args are one line."""
  from flaseg.models.heads import fla_ablation
  from configs import fla_ablation as config
  assert config.BLOCKS == fla_ablation.BLOCKS == ABLATION_BLOCKS
  fla = config_lib.load(os.path.join(REPO, "configs/fla_cityscapes.py"))
  for block in ABLATION_BLOCKS:
    c = config.get_config(f"block={block}")
    assert c.model.head_kwargs.to_dict() == {"block_type": block}
    assert c.model.backbone.to_dict() == {**fla.model.backbone.to_dict(), "depth": 50}
    for key in ("train", "optim", "loss", "data", "eval"):
      assert c[key].to_dict() == fla[key].to_dict(), key
  assert config.get_config("backbone=resnet18").model.backbone.depth == 18
  assert config.get_config("backbone=shufflenet").model.backbone.name == "shufflenet_v2"
  for bad in ("block=nl", "backbone=vgg"):
    with pytest.raises(ValueError, match="configs/fla_ablation.py") as e:
      config.get_config(bad)
    assert "\n" not in str(e.value)


def test_paper_recipes_of_sanet_attanet_reconet():
  """The numbers each paper gives, as the configs set them (SANet Sec. 4.1; AttaNet's ADE20K
  text; RecoNet's released form as an arg)."""
  load = lambda p: config_lib.load(os.path.join(REPO, "configs", p))  # noqa: E731
  voc, ctx = load("sanet_voc.py"), load("sanet_pascal_context.py")
  assert (voc.data.name, voc.optim.lr, voc.train.batch_size, voc.train.steps) == (
      "voc", 1e-4, 16, 52910)   # 80 epochs of 10,582
  assert (ctx.data.name, ctx.optim.lr, ctx.train.batch_size, ctx.train.steps) == (
      "pascal_context", 1e-3, 16, 12495)   # 40 epochs of 4,998
  for c in (voc, ctx):
    assert (c.model.backbone.depth, c.model.backbone.output_stride) == (101, 8)
  for depth in (50, 101):
    ade = load(f"attanet_ade20k.py:depth={depth}")
    assert (ade.data.name, ade.data.crop_size, ade.train.batch_size, ade.train.steps) == (
        "ade20k", (512, 512), 32, 250000)
    assert (ade.model.backbone.depth, ade.model.head, ade.loss.ohem) == (depth, "attanet",
                                                                         "attanet")
  with pytest.raises(ValueError, match="depth=34"):
    load("attanet_ade20k.py:depth=34")
  assert load("reconet_cityscapes.py:released=True").model.head_kwargs.released is True
  assert "released" not in load("reconet_cityscapes.py").model.head_kwargs  # the default
