"""How a model computes its convolutions and attention: a field of every flaseg module.

`Lowering` is a frozen (hashable) dataclass, set from `config.model.lowering` by
`build_model` and passed down by every module to its children, so the choice is part of the
model, traced with it and never a global. The defaults are each platform's best:

  conv='auto'    CPU: 1x1 convs and weight gradients as matmuls, Winograd F(2x2, 3x3) for
                 the "same" 3x3 convs with at least `winograd_min_channels` channels and
                 `winograd_min_positions` output positions, and for the weight gradient
                 only from `winograd_weight_grad_min_channels` (flaseg/models/conv.py);
                 GPU and TPU: `lax.conv_general_dilated`.
  conv='direct'  `lax.conv_general_dilated` everywhere: FLOPs counted as the papers count
                 them (scripts/cost.py) and memory as an accelerator holds it.

  dilated='auto'     a dilated stride-1 conv as d*d undilated ones on its strided sub-grids
                     (`conv.subgrid_conv`) on CUDA only, where XLA would otherwise zero-pad
                     the kernel (a 3x3 at dilation 4 runs as a 9x9); CPU, TPU: as `conv` says.
  dilated='lax'      never the sub-grids.   dilated='subgrid'  the sub-grids everywhere.

  attention='auto'     the spatial attention of NL, DNL, DANet's PAM (and CS NL's) and ISA as
                       cuDNN's fused kernel (`jax.nn.dot_product_attention`) when the backend
                       is a CUDA GPU with cuDNN and the shapes fit (bfloat16/float16, head
                       size <= 256), else 'chunked'.
  attention='chunked'  flaseg's einsum + float32 softmax, query-chunked above
                       `attention_max_bytes` (models/attention.py): CPU's and TPU's path.
  attention='xla'      `jax.nn.dot_product_attention(implementation='xla')` (any platform).
  attention='cudnn'    `implementation='cudnn'`; a ConfigError where cuDNN or the shapes do not
                       allow it. Also settable as `config.model.attention`.

  attention_max_bytes  above this many bytes for ONE image's float32 N x N map, the spatial
                       attention of NL, DNL, DANet's PAM and ISA runs query-chunked
                       (models/attention.py); 0 always chunks, float('inf') never does.
  relation_max_bytes   the same for Denoised NL's rectified relation (it holds several maps).
  attention_chunk_bytes  the float32 (B, rows, N) slice one query block may hold.
"""
import dataclasses

from flaseg.errors import ConfigError

CONVS = ("auto", "direct")
DILATED = ("auto", "lax", "subgrid")
ATTENTION = ("auto", "xla", "cudnn", "chunked")
# The platforms `jax.export` and `lax.platform_dependent` name, which this lowering knows.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


@dataclasses.dataclass(frozen=True)
class Lowering:
  conv: str = "auto"
  dilated: str = "auto"
  attention: str = "auto"
  # Where F(2x2, 3x3) beats XLA's direct conv on CPU (scripts/conv_benchmark.py): at least
  # 128 input and output channels (64: 195 against 202 GFLOP/s; 128: 254 against 203) and
  # 4096 output positions N*H*W (16x8x12 at 128 channels: 125 against 149; 16x32x48: 237
  # against 201).
  winograd_min_channels: int = 128
  winograd_min_positions: int = 4096
  # Below `winograd_min_channels` the forward stays direct, but from this many input and
  # output channels (and `winograd_min_positions`) the weight gradient is F(2x2, 3x3)'s
  # adjoint (conv.winograd_weight_grad). Per tap -> adjoint, batch 2 (`python
  # scripts/conv_benchmark.py --weight-grad`): 64 channels at 128x256 68.4 -> 50.2 ms, 96 at
  # 64x128 23.8 -> 14.3 ms; 48 at 128x256 24.9 -> 25.4 ms, so not there.
  winograd_weight_grad_min_channels: int = 64
  # 1 GiB: whole-image 1024x2048 at output stride 8 (N = 32768, 4 GiB) is chunked; training
  # crops (769: 354 MB) stay direct. Per image, not per batch: under jit over a mesh the
  # traced batch is the global one.
  attention_max_bytes: float = 2**30
  # 128 MiB: at 1/16 the training crops stay far below it (768: N = 2304, 21 MiB) while
  # whole-image 1024x2048 (N = 8192, 256 MiB) is chunked.
  relation_max_bytes: float = 2**27
  attention_chunk_bytes: int = 2**26

  def __post_init__(self):
    if self.conv not in CONVS:
      raise ConfigError(f"config.model.lowering.conv={self.conv!r}: choose one of {CONVS}")
    if self.dilated not in DILATED:
      raise ConfigError(f"config.model.lowering.dilated={self.dilated!r}: choose one of "
                        f"{DILATED}")
    if self.attention not in ATTENTION:
      raise ConfigError(f"config.model.lowering.attention={self.attention!r}: choose one of "
                        f"{ATTENTION}")


def check_platforms(platforms, lowering: Lowering = None):
  """Raises a one-line ConfigError for a platform this lowering does not know, or one that
  `lowering.attention='cudnn'` cannot run on; returns `platforms` (None: the backend's)."""
  for p in platforms or ():
    if p not in PLATFORMS:
      raise ConfigError(f"platform {p!r}: flaseg's lowering knows {PLATFORMS}")
    if lowering is not None and lowering.attention == "cudnn" and p != "cuda":
      raise ConfigError(f"config.model.lowering.attention='cudnn' cannot lower for platform "
                        f"{p!r}: cuDNN attention runs on CUDA GPUs only")
  return platforms


DEFAULT = Lowering()
