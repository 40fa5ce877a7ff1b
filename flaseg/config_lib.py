"""Config defaults, the parts configs are built from, the shared `smoke` shrink, and loading a
config file by path.

Every `configs/*.py` exposes `get_config(arg)` and reads as "dataset + recipe + network":
`base_config()`, then a dataset part (`cityscapes`, `ade20k`, `voc`, `pascal_context`: files,
classes and the dataset's usual crop and test), then a training recipe of a paper family
(`flanet_recipe`, `mmseg_recipe`, `study_recipe`), then the network (`config.model.head`, its
kwargs, backbone changes), and `apply_smoke` for `:smoke`. Later parts overwrite earlier ones,
so a recipe that tests differently from the dataset's usual protocol (mmseg, the study) sets
its own crop and test. `arg` is a comma list such as 'smoke' or 'smoke,head=nl' (`parse_arg`).
"""
import dataclasses
import importlib.util
import math
import os
from typing import Callable

import ml_collections

from flaseg.errors import ConfigError, NotFoundError


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic"      # a key of flaseg.data.DATASETS
  c.data.root = ""               # dataset folder (real datasets)
  c.data.train_split = "train"
  c.data.val_split = "val"
  # Label of ignored pixels, everywhere: the sources' label maps and unlabeled splits, the
  # padding of training crops and eval batches, the loss and the confusion matrix.
  c.data.ignore_label = 255
  c.data.crop_size = (512, 512)  # (H, W) of training crops
  c.data.scale_range = (0.5, 2.0)
  c.data.flip = True
  c.data.color_jitter = 0.25
  # 'jitter' (ColorJitter of strength color_jitter) or 'mmseg' (mmseg's PhotoMetricDistortion).
  c.data.photometric = "jitter"
  c.data.cat_max_ratio = 1.0     # < 1: mmseg's RandomCrop re-draws crops dominated by a class
  c.data.upsize_crop = False     # True: AttaNet's crop, images smaller than it resized up
  c.data.rotate90 = 0.0          # probability of AttaNet's 90-degree rotation
  c.data.num_threads = 2
  c.data.skip_corrupt = False    # True: drop unreadable files with a warning instead of failing
  c.data.eval_resize = (0, 0)    # (short, long) side resize of non-training splits (ADE20K)
  c.data.context_60 = False      # PASCAL Context: 60 classes instead of 59
  # Built-in synthetic street scenes (flaseg.data.synthetic).
  c.data.synthetic = ml_collections.ConfigDict(
      dict(num_train=2000, num_val=100, height=96, width=128))

  c.model = ml_collections.ConfigDict()
  c.model.head = "fla"
  c.model.head_kwargs = ml_collections.ConfigDict()
  c.model.num_classes = 19
  c.model.align_corners = True
  c.model.dtype = "float32"      # compute dtype; parameters stay float32
  # `name` picks the backbone (flaseg.models.BACKBONES); the rest are its fields.
  c.model.backbone = ml_collections.ConfigDict(dict(
      name="resnet", depth=101, stem="deep", output_stride=8, contract_dilation=False,
      multi_grid=None, avg_down=False, width=64))
  c.model.neck = ""              # '' or a key of flaseg.models.necks.NECKS
  c.model.neck_kwargs = ml_collections.ConfigDict()
  # How convolutions and attention are computed (flaseg/models/lowering.py): 'auto' is each
  # platform's best, 'direct' lax's convolution everywhere; dilated 'auto'|'lax'|'subgrid';
  # attention 'auto'|'xla'|'cudnn'|'chunked' (also as config.model.attention); attention
  # chunking limits in bytes.
  c.model.lowering = ml_collections.ConfigDict(dict(
      conv="auto", dilated="auto", attention="auto",
      winograd_min_channels=128, winograd_min_positions=4096,
      winograd_weight_grad_min_channels=64,
      attention_max_bytes=2**30, relation_max_bytes=2**27, attention_chunk_bytes=2**26))
  c.model.attention = ""         # '' or a value of lowering.attention, which it overrides

  c.loss = ml_collections.ConfigDict()
  c.loss.weights = ml_collections.ConfigDict({"out": 1.0})
  c.loss.avg_non_ignore = True   # False: mmseg's mean over all pixels
  c.loss.ohem = "none"           # 'none' | 'attanet' | 'ccnet'
  c.loss.ohem_outputs = "all"    # 'all' or a tuple of output names
  c.loss.ohem_thresh = 0.7
  c.loss.ohem_min_kept = 100000  # over the global batch (per device with loss.per_device)
  # True: the loss, OHEM's pixel selection included, on each device's images, averaged over
  # devices (PyTorch DDP); False: over the global batch.
  c.loss.per_device = False
  # '' (none), 'frequency' (median frequency, counted once: workdir/class_weights.json) or
  # comma-separated floats, one per class (flaseg/losses.py).
  c.loss.class_weights = ""
  c.loss.lovasz_weight = 0.0     # > 0: + weight x Lovász-softmax on every dense output

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "sgd"
  c.optim.lr = 1e-2
  c.optim.end_lr = 0.0
  c.optim.poly_power = 0.9
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.optim.no_decay_bn_bias = False
  c.optim.warmup = "none"        # 'none' | 'linear' | 'exp'
  c.optim.warmup_steps = 0
  c.optim.warmup_ratio = 0.1     # linear warm-up starts at lr * ratio
  c.optim.warmup_start = 1e-5    # exponential warm-up starts here
  c.optim.lr_mult = ml_collections.ConfigDict()  # {regex on param path: multiplier}

  c.train = ml_collections.ConfigDict()
  c.train.steps = 80000
  c.train.batch_size = 8         # global batch, divisible by the device count
  c.train.log_every = 50
  c.train.eval_every = 0         # 0: evaluate only at the end
  c.train.tensorboard = True     # event files in workdir/tensorboard (needs tensorboardX)
  # True: BatchNorm statistics of each device's images (DDP without SyncBN); False: of the
  # global batch (SyncBN). train.loss_and_grads.
  c.train.per_device_batch_norm = False

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1000
  c.checkpoint.max_to_keep = 2   # newest checkpoints kept; the newest verified one always is
  c.checkpoint.restore_step = 0  # 0: resume from the latest checkpoint; N: from checkpoint N
  # Resume even if the model, data, loss or optimizer settings differ from the saved config.
  c.checkpoint.allow_changes = False

  c.eval = ml_collections.ConfigDict()
  c.eval.mode = "whole"          # 'whole' | 'slide'
  c.eval.scales = (1.0,)
  c.eval.flip = False
  c.eval.crop_size = (512, 512)  # sliding window
  c.eval.stride = (341, 341)
  c.eval.batch_size = 0          # 0: one image per device
  c.eval.num_images = 0          # 0: the whole split
  # (H, W) every eval batch is padded to (image 0, label ignore_label), so that one shape
  # compiles once and every process yields the same shape; a larger image is an error.
  # (0, 0): each batch is padded to its largest image.
  c.eval.pad_to = (0, 0)
  # True: score against the labels before data.eval_resize, each prediction resized back
  # (bilinear probabilities) to its image's original size, as mmseg's test does.
  c.eval.original_labels = False
  c.eval.save_images = 4         # coloured predictions written to workdir/predictions
  c.eval.export_dir = ""         # predictions in the benchmark's submission format (flaseg.export)

  c.init = ml_collections.ConfigDict(dict(backbone="", checkpoint=""))
  return c


def slide_eval(c: ml_collections.ConfigDict, crop, stride, scales=(1.0,),
               flip: bool = False) -> ml_collections.ConfigDict:
  """Test over `crop` windows every `stride` (mmseg's slide_inference), mean of the softmax
  over `scales` (and their flips)."""
  c.eval.mode = "slide"
  c.eval.crop_size = tuple(crop)
  c.eval.stride = tuple(stride)
  c.eval.scales = tuple(scales)
  c.eval.flip = flip
  return c


# Datasets: the files, the classes, and the crop and multi-scale + flip test that the CCNet /
# DANet / FLANet line of papers uses on each (recipes of other families set their own).

MS_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)             # ADE20K, VOC, Context
MS_SCALES_CITYSCAPES = (0.75, 1.0, 1.25, 1.5, 1.75)


def cityscapes(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Cityscapes fine (2,975 train / 500 val images of 1024x2048, 19 classes): crop 768,
  768x768 windows at stride 512, scales 0.75-1.75 + flip (FLANet, CCNet). Every image has
  the same size, so eval batches need no `pad_to`."""
  c.data.name = "cityscapes"
  c.data.root = "data/cityscapes"
  c.data.train_split = "train"
  c.data.val_split = "val"
  c.data.crop_size = (768, 768)
  c.data.eval_resize = (0, 0)
  c.model.num_classes = 19
  return slide_eval(c, (768, 768), (512, 512), MS_SCALES_CITYSCAPES, flip=True)


def ade20k(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """ADE20K SceneParsing (20,210 train / 2,000 val images of many sizes, 150 classes; 0
  'other' ignored, class k stored as k + 1): crop 520; validation images resized to short side
  512 with the long side at most 2048 (mmseg's rule; mIoU at that size), 520x520 windows at
  stride 346, scales 0.5-1.75 + flip.

  `eval.pad_to` stays (0, 0), each batch padded to its largest image: after the resize an
  image is 512 on its short side and up to 2048 on its long side in either orientation, so the
  one shape that holds them all is (2048, 2048), whose 520-windows at stride 346 are 6 x 6 = 36
  per scale against 2 for a typical 512x683 image: about 18x the test's work, far more than
  compiling each batch shape once, and any smaller shape stops the test at the first image
  that does not fit. Multi-host runs need one shape on every process: set
  `--config.eval.pad_to=(2048,2048)` there.
  """
  c.data.name = "ade20k"
  c.data.root = "data/ade"
  c.data.train_split = "train"       # images/training
  c.data.val_split = "val"           # images/validation
  c.data.crop_size = (520, 520)
  c.data.eval_resize = (512, 2048)   # (short side, longest long side) of evaluated images
  c.model.num_classes = 150
  c.eval.pad_to = (0, 0)
  return slide_eval(c, (520, 520), (346, 346), MS_SCALES, flip=True)


def voc(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """PASCAL VOC 2012 with SBD's augmented training set: 'trainaug' (10,582 images), 'val'
  (1,449) at the original size (at most 500x500), 21 classes, 255 on object borders: crop
  520, 520x520 windows at stride 346, scales 0.5-1.75 + flip."""
  c.data.name = "voc"
  c.data.root = "data/voc"
  c.data.train_split = "trainaug"    # SegmentationClassAug (SBD); mmseg's converter: 'aug'
  c.data.val_split = "val"
  c.data.crop_size = (520, 520)
  c.data.eval_resize = (0, 0)        # evaluate at the original size
  c.model.num_classes = 21
  return slide_eval(c, (520, 520), (346, 346), MS_SCALES, flip=True)


def pascal_context(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """PASCAL Context (4,998 train / 5,105 val images of VOC 2010, at most 500x500): 59 classes
  with background ignored, or 60 with `data.context_60=True` (num_classes 0: the dataset's);
  crop 520, 520x520 windows at stride 346, scales 0.5-1.75 + flip, at the original size."""
  c.data.name = "pascal_context"
  c.data.root = "data/context"
  c.data.train_split = "train"
  c.data.val_split = "val"
  c.data.context_60 = False          # True: 60 classes, background included
  c.data.crop_size = (520, 520)
  c.data.eval_resize = (0, 0)        # evaluate at the original size
  c.model.num_classes = 0            # the dataset's: 59, or 60 with context_60
  return slide_eval(c, (520, 520), (346, 346), MS_SCALES, flip=True)


# Training recipes of the paper families.


# Training images per dataset (FLANet's schedule is counted in epochs): Cityscapes train,
# ADE20K training, VOC 'trainaug' (SBD), PASCAL Context train.
TRAIN_IMAGES = {"cityscapes": 2975, "ade20k": 20210, "voc": 10582, "pascal_context": 4998}


def flanet_recipe(c: ml_collections.ConfigDict, epochs: int = 240,
                  dataset_size: int = 0) -> ml_collections.ConfigDict:
  """FLANet's recipe (Song et al., AAAI 2022, Implementation Details), shared by its ablation
  heads and Denoised NL (same authors): deep-stem ResNet-101 at output stride 8, batch 8, SGD
  lr 1e-2 poly 0.9, momentum 0.9, wd 5e-4, `epochs` (240 in the paper) of `dataset_size`
  (default: `TRAIN_IMAGES` of the dataset part's `c.data.name`) training images
  = epochs * dataset_size / 8 iterations (Cityscapes: 240 x 2975 / 8 =
  89,250); main + 0.4 x (aux1 + aux2) (aux weights not released; CCNet lineage). Crop and
  test are the dataset part's."""
  c.model.backbone.depth = 101
  c.model.backbone.stem = "deep"
  c.model.backbone.output_stride = 8
  c.loss.weights = {"out": 1.0, "aux1": 0.4, "aux2": 0.4}
  c.optim.lr = 1e-2
  c.optim.poly_power = 0.9
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.train.batch_size = 8
  dataset_size = dataset_size or TRAIN_IMAGES[c.data.name]
  c.train.steps = math.ceil(epochs * dataset_size / c.train.batch_size)
  c.checkpoint.every = 2000
  return c


def mmseg_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """mmseg's Cityscapes 769x769 80k recipe for R-50-D8 heads (attention-heads.md §1.2-1.3):
  ResNetV1c-50 (deep stem 32-32-64, contract_dilation) at output stride 8, crop 769, batch 8
  (4 GPUs x 2), SGD lr 0.01 poly 0.9 down to 1e-4, wd 5e-4, 80k iterations, CE averaged over
  all pixels (avg_non_ignore=False), align_corners=True, RandomCrop(cat_max_ratio=0.75) and
  PhotoMetricDistortion, single-scale slide test 769 at stride 513 (Cityscapes resized to
  1025x2049 first) scored against the original-size labels; outputs 'out' and the layer3
  auxiliary FCN head 'aux' at weight 0.4 (§1.2)."""
  c.data.crop_size = (769, 769)
  c.data.scale_range = (0.5, 2.0)
  c.data.photometric = "mmseg"
  c.data.cat_max_ratio = 0.75
  c.model.align_corners = True
  c.model.backbone.depth = 50
  c.model.backbone.stem = "v1c"
  c.model.backbone.output_stride = 8
  c.model.backbone.contract_dilation = True
  c.model.backbone.multi_grid = None
  c.loss.avg_non_ignore = False
  c.loss.weights = {"out": 1.0, "aux": 0.4}
  c.optim.lr = 0.01
  c.optim.end_lr = 1e-4
  c.optim.poly_power = 0.9
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-4
  c.train.steps = 80000
  c.train.batch_size = 8
  c.checkpoint.every = 4000
  # mmseg's test: Resize(scale=(2049, 1025), keep_ratio) of Cityscapes (ADE20K's (2048, 512)
  # is the dataset's eval_resize already), scored at the original label size.
  if c.data.name == "cityscapes":
    c.data.eval_resize = (1025, 2049)
  c.eval.original_labels = True
  return slide_eval(c, (769, 769), (513, 513))


def study_recipe(c: ml_collections.ConfigDict, crop=(769, 769),
                 stride=(513, 513)) -> ml_collections.ConfigDict:
  """The empirical study's training figures (Guo et al., arXiv 2309.10217) as a recipe for a
  network that keeps its own stem, dilations and loss settings; RecoNet and SANet (no
  Cityscapes recipe of their own) train with it: ResNet-101 at output stride 8, crop `crop`
  (769 Cityscapes, 520 ADE20K), batch 8, SGD lr 1e-2 poly 0.9 without warm-up or LR
  multipliers, 80k iterations, single-scale slide test over `crop` windows every `stride`.
  The study's comparison itself is configs/study.py, stricter: one backbone and mmseg's whole
  recipe for every head (`study_protocol`)."""
  c.data.crop_size = tuple(crop)
  c.model.backbone.depth = 101
  c.model.backbone.output_stride = 8
  c.optim.lr = 1e-2
  c.optim.poly_power = 0.9
  c.optim.warmup = "none"
  c.optim.lr_mult = {}
  c.train.steps = 80000
  c.train.batch_size = 8
  return slide_eval(c, crop, stride)


def attanet_recipe(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """AttaNet's recipe (songqi-github/AttaNet train.py, loss.py, optimizer.py, evaluate.py):
  crop 1024x1024 (images smaller than it resized up to cover it, transform.py RandomCrop),
  scales [0.75, 2.0] (continuous; the official set is discrete), colour jitter 0.5 (of the
  crop; AttaNet's is PIL's ImageEnhance of the whole image), 90-degree rotation with
  probability 0.5 (transform.py Rotation), batch 16 (2 GPUs x 8), 200k iterations, SGD lr 1e-2 poly 0.9, momentum 0.9, wd
  5e-4 without decay on BN and biases, exponential warm-up over 1000 iterations from 1e-5,
  10x LR on the output heads ('head/conv_out'), AttaNet OHEM (0.7, n_min 1024*1024 over the
  global batch) on the three outputs with weight 1; test: 1024 windows at stride 854 + flip."""
  c.data.crop_size = (1024, 1024)
  c.data.scale_range = (0.75, 2.0)
  c.data.color_jitter = 0.5
  c.data.upsize_crop = True
  c.data.rotate90 = 0.5
  c.loss.weights = {"out": 1.0, "aux1": 1.0, "aux2": 1.0}
  c.loss.ohem = "attanet"
  c.loss.ohem_outputs = "all"
  c.loss.ohem_thresh = 0.7
  c.loss.ohem_min_kept = 1024 * 1024
  c.optim.lr = 1e-2
  c.optim.no_decay_bn_bias = True
  c.optim.warmup = "exp"
  c.optim.warmup_steps = 1000
  c.optim.warmup_start = 1e-5
  c.optim.lr_mult = {"head/conv_out": 10.0}
  c.train.steps = 200000
  c.train.batch_size = 16
  c.checkpoint.every = 5000
  return slide_eval(c, (1024, 1024), (854, 854), flip=True)


def ddp_without_syncbn(c: ml_collections.ConfigDict,
                       images_per_device: int) -> ml_collections.ConfigDict:
  """PyTorch DDP with plain BatchNorm, as AttaNet trains (train.py: 2 GPUs x 8 images): per-
  device BatchNorm statistics and per-device loss and OHEM (`train.loss_and_grads`), with
  AttaNet's per-GPU n_min = images x crop H x crop W / 16. The recipe's split of the batch holds
  only on batch_size / images_per_device devices (2 for AttaNet's 16 = 2 x 8); on other device
  counts set `loss.ohem_min_kept` to the new per-device images x H x W / 16."""
  c.train.per_device_batch_norm = True
  c.loss.per_device = True
  h, w = c.data.crop_size
  c.loss.ohem_min_kept = images_per_device * h * w // 16
  return c


def sanet_recipe(c: ml_collections.ConfigDict, lr: float, epochs: int) -> ml_collections.ConfigDict:
  """SANet's training (Zhong et al., CVPR 2020, Sec. 4.1 "Implementation"): SGD, poly, `lr`
  (1e-3 PASCAL Context, 1e-4 VOC), batch 16, SyncBN, `epochs` of the dataset part's training
  images; PyTorch-Encoding's dilated ResNet (deep stem, first block of a dilated stage at half
  dilation, output stride 8: the paper's code base). Silent in the text, PyTorch-Encoding's
  defaults (experiments/segmentation/option.py): momentum 0.9, wd 1e-4, poly 0.9, crop 480
  with scales 0.5-2.0. Loss out 1 + se 0.2 + aux 0.8 (Fig. 4's values, unverified)."""
  c.model.backbone.depth = 101
  c.model.backbone.stem = "deep"
  c.model.backbone.output_stride = 8
  c.model.backbone.contract_dilation = True
  c.data.crop_size = (480, 480)
  c.data.scale_range = (0.5, 2.0)
  c.loss.weights = {"out": 1.0, "se": 0.2, "aux": 0.8}
  c.optim.lr = lr
  c.optim.poly_power = 0.9
  c.optim.momentum = 0.9
  c.optim.weight_decay = 1e-4
  c.train.batch_size = 16
  c.train.steps = math.ceil(epochs * TRAIN_IMAGES[c.data.name] / 16)
  c.checkpoint.every = 1000
  return c


def realtime_eval(c: ml_collections.ConfigDict, size=(512, 1024)) -> ml_collections.ConfigDict:
  """AttaNet's real-time protocol (its Table 1 mIoU and FPS): the image resized to `size`
  inside the model, predicted whole, the prediction resized back; single scale, no flip.
  Reconstruction: the paper states the 512x1024 input, not the resize kernels (flaseg: bilinear
  half-pixel for the image, the model's align_corners for the logits)."""
  c.eval.mode = "resize"
  c.eval.crop_size = tuple(size)
  c.eval.scales = (1.0,)
  c.eval.flip = False
  return c


def flanet_on_hrnet(c: ml_collections.ConfigDict, width: int = 48) -> ml_collections.ConfigDict:
  """FLANet on HRNetV2-W`width` (FLANet Tables 1, 4, 5). Reconstruction, FLANet's code is
  ResNet only: the `resize_concat` neck (720 channels at 1/4 for W48) -> two 3x3 ConvBNReLU to
  512 -> FLA -> FLANet's output head on cat[concat, FLA output] without the x2 upsampling
  (already at 1/4); one aux head on the concat as HRNet-OCR's (1x1 720 -> 720 + BN + ReLU,
  1x1 -> K; weight 0.4)."""
  c.model.backbone = ml_collections.ConfigDict(dict(name="hrnet", width=width))
  c.model.neck = "resize_concat"
  c.model.head = "fla"
  c.model.head_kwargs = dict(channels=512, in_key="concat", upsample=False,
                             aux_keys=("concat",), aux_channels=15 * width, aux_kernel=1)
  c.loss.weights = {"out": 1.0, "aux1": 0.4}
  return c


def network(dataset: Callable, recipe: Callable, head: str, head_kwargs=None,
            loss_weights=None) -> ml_collections.ConfigDict:
  """`base_config()` with a dataset part (`cityscapes`, `ade20k`, ...), then a recipe part
  (`flanet_recipe`, `mmseg_recipe`, `study_recipe`: functions of the config) and the network
  (`head`, `head_kwargs`, and `loss_weights` where they differ from the recipe's)."""
  c = base_config()
  dataset(c)
  recipe(c)
  c.model.head = head
  if head_kwargs:
    c.model.head_kwargs = dict(head_kwargs)
  if loss_weights:
    c.loss.weights = dict(loss_weights)
  return c


def mmseg_cityscapes(head: str, head_kwargs: dict, loss_weights=None) -> Callable:
  """The `get_config(arg)` of an mmseg head on Cityscapes with `mmseg_recipe` (R-50-D8,
  769x769, 80k; its layer3 aux FCN head at 0.4 unless `loss_weights` says otherwise), with
  the `smoke` arg: what configs/{fcn,nl,dnl,danet,emanet,isanet,ccnet}_cityscapes.py are."""
  def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = network(cityscapes, mmseg_recipe, head, head_kwargs, loss_weights)
    return apply_smoke(c) if arg.smoke else c
  return get_config


# Config args.


def _parse_value(key: str, value: str, default):
  if isinstance(default, bool):
    if value.lower() in ("true", "1"):
      return True
    if value.lower() in ("false", "0"):
      return False
    raise ConfigError(f"config arg {key}={value!r}: expected true/false/1/0")
  if isinstance(default, (int, float)):
    try:
      return type(default)(value)
    except ValueError:
      raise ConfigError(f"config arg {key}={value!r}: expected {type(default).__name__}") from None
  return value


def parse_arg(arg: str, **defaults) -> ml_collections.ConfigDict:
  """'smoke,head=nl' -> {'smoke': True, 'head': 'nl'} over `defaults` (big_vision style).

  A bare name sets a boolean arg to True; `name=value` is read as the default's type
  (booleans: true/false/1/0, any case). Unknown names and unreadable values are a one-line
  ValueError naming them."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if key not in out:
      raise ConfigError(f"config arg {key!r}: known args are {sorted(out)}")
    if not sep:
      if not isinstance(out[key], bool):
        raise ConfigError(f"config arg {key!r} needs a value: {key}=...")
      out[key] = True
    elif out[key] is None:
      out[key] = value
    else:
      out[key] = _parse_value(key, value, out[key])
  return out


# `:smoke`.

# The tiny widths of `:smoke` networks: each key a head has (a field of its class or a key of
# config.model.head_kwargs) is set to this, unless it is 0 (a branch switched off, e.g. an FCN
# without aux head, stays off); then the head's SMOKE_HEAD_EXTRAS.
SMOKE_HEAD_KWARGS = {
    "channels": 16, "aux_channels": 8, "qk_channels": 8, "out_channels": 16,
    "gr_channels": 8, "isa_channels": 8, "ema_channels": 8, "num_bases": 4, "rank": 4,
    "profile_size": 8,
}
SMOKE_HEAD_EXTRAS = {
    "danet": {"pam_channels": 4},  # CS NL's PAM keeps its 64 q/k channels
}


def _head_defaults(head: str) -> dict:
  """{field: default} of the head class (empty for an unknown head: build_model names it)."""
  from flaseg import models  # imported here: loading a full config needs no jax
  cls = models.HEADS.get(head)
  if cls is None:
    return {}
  return {f.name: (None if f.default is dataclasses.MISSING else f.default)
          for f in dataclasses.fields(cls)}


def apply_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks any config to a run that finishes in well under a minute on a laptop CPU: tiny
  backbone (ResNet width 8; other backbones their class's `SMOKE_FIELDS`) and head widths
  (SMOKE_HEAD_KWARGS), synthetic data, small crops, a few steps."""
  c.data.name = "synthetic"
  c.data.root = ""
  c.data.synthetic = ml_collections.ConfigDict(dict(num_train=64, num_val=8, height=48, width=64))
  c.data.crop_size = (32, 48)
  c.data.num_threads = 1
  c.model.num_classes = 0        # 0: taken from the dataset
  backbone = c.model.backbone
  if backbone.get("name", "resnet") == "resnet":
    backbone.depth = 18 if backbone.depth in (18, 34) else 50
    backbone.width = 8
  else:  # every other backbone declares its tiny fields
    from flaseg import models  # imported here: loading a full config needs no jax
    backbone.update(models.BACKBONES[backbone.name].SMOKE_FIELDS)
  defaults = _head_defaults(c.model.head)
  kwargs = c.model.head_kwargs
  for key, value in SMOKE_HEAD_KWARGS.items():
    if kwargs.get(key, defaults.get(key)):
      kwargs[key] = value
  for key, value in SMOKE_HEAD_EXTRAS.get(c.model.head, {}).items():
    kwargs[key] = value
  c.loss.ohem_min_kept = 256
  c.optim.warmup_steps = min(c.optim.warmup_steps, 2)
  c.train.steps = 6
  c.train.batch_size = 8
  c.train.log_every = 2
  c.train.eval_every = 0
  c.checkpoint.every = 3
  c.eval.crop_size = (32, 32)
  c.eval.stride = (24, 24)
  c.eval.batch_size = 0
  c.eval.num_images = 8
  c.eval.save_images = 2
  return c


def load(path_with_arg: str) -> ml_collections.ConfigDict:
  """`load('configs/quickstart.py:smoke')`: the config a `--config=` flag would give."""
  path, _, arg = path_with_arg.partition(":")
  module = load_module(path)
  return module.get_config(arg) if arg else module.get_config()


def load_module(path: str):
  """The config file at `path` as a module (its `get_config` and any tables it defines)."""
  if not os.path.isfile(path):
    raise NotFoundError(f"config file not found: {path}")
  spec = importlib.util.spec_from_file_location("flaseg_config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
