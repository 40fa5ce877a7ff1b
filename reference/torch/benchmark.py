"""The PyTorch side of `scripts/benchmark.py --reference=torch`: the config's network in
PyTorch (mmseg's own for the mmseg heads, the official FLANet for fla), its train step and
inference on a fixed random batch, and their img/s."""
import numpy as np

from flaseg import timing
from reference.torch import attanet, attanet_light, flanet, mmseg_peers
from reference.torch.imports import declare_torchvision_ops, import_torch

REFERENCE_HEADS = mmseg_peers.MMSEG_HEADS + ("fla",)


def check(config):
  """Raises a one-line ValueError if `config` has no PyTorch peer here; builds nothing."""
  m = config.model
  bb = m.backbone
  if m.head in mmseg_peers.MMSEG_HEADS:
    mmseg_peers.check(config)
  elif m.head == "fla":
    if bb.stem != "deep" or bb.output_stride != 8:
      raise ValueError("--reference=torch for fla needs the official backbone: "
                       "config.model.backbone.stem='deep', output_stride=8")
  else:
    raise ValueError(f"--reference=torch: no PyTorch reference for model.head={m.head!r}; "
                     f"it covers {', '.join(REFERENCE_HEADS)}")


def build(config):
  """(torch module, outputs(net, x, train) -> dict of logits, description) for a config."""
  check(config)
  m = config.model
  if m.head in mmseg_peers.MMSEG_HEADS:
    import mmseg
    bb = m.backbone
    backbone = (f"HRNetV2-W{bb.width}" if bb.get("name", "resnet") == "hrnet"
                else f"ResNetV1c-{bb.depth}")
    return (mmseg_peers.mmseg_segmentor(config), mmseg_peers.mmseg_outputs,
            f"mmseg {mmseg.__version__} EncoderDecoder, {backbone}")
  bb, kw = m.backbone, dict(m.head_kwargs)  # fla: check() admits nothing else
  net = flanet.flanet(bb.depth, m.num_classes, bb.width, kw.get("channels", 512),
                      kw.get("aux_channels", 64), kw.get("dropout", 0.1))
  return (net, lambda n, x, train: n(x, aux=train),
          f"torch FLANet (official model.py), deep-stem ResNet-{bb.depth}")


def make_steps(config, size, batch, seed=0):
  """(train_step, infer, description) of the config's peer on one fixed random batch.

  `train_step()` runs one SGD step (the config's lr, momentum, weight decay) of the config's
  loss weights (CE with ignore 255 on logits resized to the label) and returns that loss;
  `infer()` returns the argmax of the main output resized to the input, (batch, H, W).
  """
  torch = import_torch()
  F = torch.nn.functional
  torch.manual_seed(seed)
  net, outputs, description = build(config)
  h, w = size
  rng = np.random.default_rng(seed)
  x = torch.from_numpy(rng.standard_normal((batch, 3, h, w)).astype(np.float32))
  label = torch.from_numpy(rng.integers(0, config.model.num_classes, (batch, h, w)))
  weights = dict(config.loss.weights)
  o = config.optim
  opt = torch.optim.SGD(net.parameters(), lr=o.lr, momentum=o.momentum,
                        weight_decay=o.weight_decay)
  resize = lambda t: F.interpolate(t, (h, w), mode="bilinear",
                                   align_corners=config.model.align_corners)

  def train_step():
    net.train()
    opt.zero_grad(set_to_none=True)
    outs = outputs(net, x, True)
    loss = sum(weights[k] * F.cross_entropy(resize(v), label, ignore_index=255)
               for k, v in outs.items() if weights.get(k))
    loss.backward()
    opt.step()
    return loss.detach()

  def infer():
    net.eval()
    with torch.inference_mode():
      return resize(outputs(net, x, False)["out"]).argmax(1)

  return train_step, infer, description


def benchmark(config, size, batch, steps=5, warmup=1, seed=0):
  """img/s of one SGD train step and of inference (see `make_steps`) in PyTorch."""
  torch = import_torch()
  train_step, infer, description = make_steps(config, size, batch, seed)
  train_s = timing.median_seconds(train_step, steps, warmup, block=False)
  infer_s = timing.median_seconds(infer, steps, warmup, block=False)
  return {"reference": f"{description}, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads",
          "reference_train_img_per_s": batch / train_s,
          "reference_infer_img_per_s": batch / infer_s,
          "reference_train_step_s": train_s, "reference_infer_step_s": infer_s}


# The official PyTorch networks of AttaNet's real-time table: (head, backbone name).
REALTIME_PEERS = {("attanet", "resnet"): "official AttaNet (ResNet-18)",
                  ("attanet_light", "attanet_light"): "official AttaNet light"}


def realtime(config, size=(1024, 2048), inner=(512, 1024), steps=10, warmup=2, seed=0):
  """AttaNet's real-time protocol in PyTorch, timed as the paper times it: batch 1, the
  `size` image resized to `inner` (bilinear) inside the timed loop, the official network's
  forward (AttaNet.py on ResNet-18, or AttaNet_light.py), the main output resized back to
  `size`, argmax. Returns its FPS."""
  m = config.model
  key = (m.head, m.backbone.get("name", "resnet"))
  if key not in REALTIME_PEERS:
    raise ValueError(f"--realtime --reference=torch: no official PyTorch network for head "
                     f"{key[0]!r} on backbone {key[1]!r}; there are {sorted(REALTIME_PEERS)}")
  torch = import_torch()
  F = torch.nn.functional
  torch.manual_seed(seed)
  if m.head == "attanet":
    declare_torchvision_ops(torch)  # torchvision's PyPI build lacks this torch's kernels
    import torchvision
    net = attanet.attanet(torch, torchvision, m.num_classes).eval()
  else:
    net = attanet_light.attanet_light(torch, m.num_classes).eval()
  rng = np.random.default_rng(seed)
  image = torch.from_numpy(rng.integers(0, 256, (1, 3, *size)).astype(np.float32))

  def predict():
    with torch.inference_mode():
      x = F.interpolate(image, inner, mode="bilinear", align_corners=False)
      out = net(x)[0]
      return F.interpolate(out, size, mode="bilinear", align_corners=True).argmax(1)

  seconds = timing.median_seconds(predict, steps, warmup, block=False)
  return {"reference_realtime": f"{REALTIME_PEERS[key]}, torch {torch.__version__}, "
                                f"{torch.get_num_threads()} threads",
          "reference_realtime_fps": 1.0 / seconds}
