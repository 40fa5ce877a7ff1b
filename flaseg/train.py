"""The trainer: one `jax.jit` train step over a data-parallel mesh, periodic evaluation,
Orbax checkpoints with the grain iterator, automatic resume, SIGTERM-safe.

`train_and_evaluate(config, workdir)` is the entry point of `flaseg.main` and of notebooks.
"""
import os
import signal
from typing import Any, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from flaseg import (checkpoint, convert, data, evaluate, export, inference, losses, optim,
                    parallel, tensorboard)
from flaseg.errors import ConfigError, DivergedError, NotFoundError
from flaseg.models import build_model, init_variables
from flaseg.reporting import MetricsLog, Progress, info, is_main
from flaseg.workdir import (Lock, abs_workdir, check_shared_workdir, check_writable,
                            prepare_workdir, truncate_metrics)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  model_state: Any  # every non-'params' collection: batch_stats, EMA bases, ...
  opt_state: Any


def loss_and_grads(model, loss_cfg, params, model_state, batch, rng, ignore_label=255,
                   mesh=None, per_device_batch_norm=False):
  """((loss, (terms, new_model_state)), grads) of `total_loss` on one global batch.

  By default BatchNorm and the loss (OHEM's pixel selection included) see the global batch:
  SyncBN. With `mesh`, `per_device_batch_norm` and `loss_cfg.per_device` reproduce PyTorch DDP
  without SyncBN (AttaNet's training): `shard_map` over the 'data' axis runs the forward pass
  (BatchNorm statistics of each device's own images) and the loss (each device's own OHEM
  selection and mean) per device. The loss is the mean over devices of the devices' losses, so
  its gradient is DDP's all-reduced mean of per-device gradients. The new BatchNorm running
  statistics are device 0's, as DDP's `broadcast_buffers` makes every replica hold rank 0's.
  Dropout masks are drawn per device from `fold_in(rng, device index)`. `check_vma=False`:
  the CPU convolutions' `custom_vjp` (models/conv.py) carries no device-variance types; the
  gradients are checked against a DDP built from one-device steps (tests/test_parallel.py).
  """
  per_device_loss = bool(loss_cfg.get("per_device", False))
  if (per_device_batch_norm or per_device_loss) and mesh is None:
    raise ValueError("per-device BatchNorm or loss needs the mesh")
  mutable = list(model_state) or False

  def forward(p, state, images, key):
    res = model.apply({"params": p, **state}, images, train=True, mutable=mutable,
                      rngs={"dropout": key})
    return res if mutable else (res, {})

  def per_device_forward(p, state, images, key):
    key = jax.random.fold_in(key, jax.lax.axis_index("data"))
    outputs, new_state = forward(p, state, images, key)
    return outputs, jax.tree.map(lambda x: x[None], new_state)  # stacked over devices

  def per_device_loss_fn(outputs, labels):
    loss, terms = losses.total_loss(outputs, labels, loss_cfg, ignore_label)
    return jax.lax.pmean((loss, terms), "data")

  def loss_fn(p):
    if per_device_batch_norm:
      outputs, stacked = jax.shard_map(
          per_device_forward, mesh=mesh, in_specs=(P(), P(), P("data"), P()),
          out_specs=(P("data"), P("data")), check_vma=False)(p, model_state, batch["image"], rng)
      new_state = jax.tree.map(lambda x: x[0], stacked)
    else:
      outputs, new_state = forward(p, model_state, batch["image"], rng)
    if per_device_loss:
      loss, terms = jax.shard_map(per_device_loss_fn, mesh=mesh, in_specs=(P("data"), P("data")),
                                  out_specs=P(), check_vma=False)(outputs, batch["label"])
    else:
      loss, terms = losses.total_loss(outputs, batch["label"], loss_cfg, ignore_label)
    return loss, (terms, new_state)
  return jax.value_and_grad(loss_fn, has_aux=True)(params)


def all_finite(*trees) -> jax.Array:
  """Whether every element of every leaf of `trees` is finite (one bool)."""
  leaves = [x for t in trees for x in jax.tree.leaves(t)]
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))


def make_train_step(model, tx, schedule, loss_cfg, ignore_label=255, mesh=None,
                    per_device_batch_norm=False):
  """Pure `train_step(state, batch, rng) -> (state, metrics)`; the dropout key is
  `fold_in(rng, step)` so that a resumed run draws the same masks. metrics['finite'] says
  whether the loss, the gradients and the new state are all finite (the loop stops on the
  first step where they are not, and never saves such a state)."""
  def train_step(state, batch, rng):
    step_rng = jax.random.fold_in(rng, state.step)
    (loss, (terms, new_state)), grads = loss_and_grads(
        model, loss_cfg, state.params, state.model_state, batch, step_rng, ignore_label, mesh,
        per_device_batch_norm)
    # Keep the state's dtypes fixed (float64 compute would promote BN statistics) so the
    # step never retraces.
    new_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_state, state.model_state)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "lr": schedule(state.step),
               **{f"loss_{k}": v for k, v in terms.items()},
               "finite": all_finite(loss, grads, params, new_state)}
    return TrainState(state.step + 1, params, new_state, opt_state), metrics
  return train_step


def resolve_num_classes(config, source):
  """config.model.num_classes = 0 means 'the dataset's'; otherwise they must agree."""
  n = source.num_classes
  if config.model.num_classes == 0:
    with config.unlocked():
      config.model.num_classes = n
  elif config.model.num_classes != n:
    raise ConfigError(f"config.model.num_classes={config.model.num_classes} but dataset "
                     f"{config.data.name!r} has {n} classes")


class _Preemption:
  """Turns SIGTERM (TPU VM preemption, `kill`) and SIGINT (Ctrl-C) into a flag the loop checks
  between steps: it saves that step's checkpoint and exits with 128 + the signal number. A
  second Ctrl-C interrupts at once (the save in flight is still finished, by `Saver`).

  With several processes, JAX's preemption service (started by `jax.distributed.initialize`)
  catches SIGTERM instead: a notice to any process reaches all of them, and
  `reached_preemption_sync_point` turns True on every process at the same step, so that they
  all save that step's checkpoint (a collective) and exit together.
  """

  def __init__(self):
    self.requested = False
    self.signal = signal.SIGTERM
    self._old = {}
    self._multi = jax.process_count() > 1

  def __enter__(self):
    if self._multi:
      return self
    try:
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._old[sig] = signal.signal(sig, self._handler)
    except ValueError:  # not the main thread (e.g. some notebooks): no handler
      pass
    return self

  def _handler(self, signum, frame):
    self.requested, self.signal = True, signal.Signals(signum)
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)

  def check(self, step: int) -> bool:
    """Whether to save and stop after `step`; call once per step on every process."""
    if self._multi and not self.requested:
      self.requested = multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def create_state(config, model, tx, mesh, image_shape):
  rng = jax.random.key(config.seed)

  def init(rng):
    params, model_state = init_variables(model, rng, image_shape)
    return TrainState(jnp.zeros((), jnp.int32), params, model_state, tx.init(params))

  return jax.jit(init, out_shardings=parallel.replicated(mesh))(rng)


def init_pretrained(config, state):
  """Loads weights converted by `python -m flaseg.convert`: `config.init.backbone` replaces
  every backbone variable, `config.init.checkpoint` every variable. Names or shapes that do
  not match the model raise `convert.ConversionError` listing them."""
  params, model_state = state.params, state.model_state
  for path, require in ((config.init.backbone, "backbone"), (config.init.checkpoint, "")):
    if path:
      params, model_state = convert.merge(params, model_state, convert.load_converted(path),
                                          require)
      info(f"initialised {'the backbone' if require else 'the model'} from {path}")
  if params is state.params and model_state is state.model_state:
    return state
  put = lambda new, old: jax.device_put(new, getattr(old, "sharding", None))
  return state.replace(params=jax.tree.map(put, params, state.params),
                       model_state=jax.tree.map(put, model_state, state.model_state))


def build(config, mesh):
  """Model, optimizer, LR schedule and the abstract (shape + sharding) train state."""
  model = build_model(config.model)
  image_shape = (config.train.batch_size, *tuple(config.data.crop_size), 3)
  # The optimizer's structure only depends on parameter shapes.
  abstract_params = jax.eval_shape(
      lambda r: init_variables(model, r, image_shape)[0], jax.random.key(0))
  tx, schedule = optim.make_optimizer(config.optim, abstract_params, int(config.train.steps))
  repl = parallel.replicated(mesh)
  abstract_state = jax.eval_shape(lambda: create_state(config, model, tx, mesh, image_shape))
  abstract_state = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl), abstract_state)
  return model, tx, schedule, abstract_state, image_shape


def eval_splits(data_cfg) -> list:
  """The evaluation splits: `config.data.val_split` is one name ('val') or several
  ('val,test' or a tuple)."""
  splits = data_cfg.val_split
  splits = splits.split(",") if isinstance(splits, str) else list(splits)
  splits = [s.strip() for s in splits if s.strip()]
  if not splits:
    raise ConfigError(f"config.data.val_split={data_cfg.val_split!r}: name at least one split")
  return splits


class EvalSplit(NamedTuple):
  """One evaluation split: its evaluator, and its submission-format exporter (or None)."""
  name: str
  evaluator: evaluate.Evaluator
  exporter: Optional[export.Exporter]


def make_evaluations(config, model, mesh, sources: dict) -> list:
  """An `EvalSplit` for every source of `sources` ({split: source})."""
  predict = evaluate.make_predict_fn(model, config.eval, config.model.align_corners)
  n = int(config.eval.num_images)
  splits = []
  for i, (split, source) in enumerate(sources.items()):
    source = evaluate.FirstExamples(source, n) if n else source
    evaluator = evaluate.Evaluator(
        predict, source, mesh, num_classes=config.model.num_classes,
        batch_size=config.eval.batch_size, ignore_label=config.data.ignore_label,
        pad_to=tuple(config.eval.pad_to), name=f"eval {split}" if i else "eval",
        original_labels=config.eval.get("original_labels", False))
    exporter = (export.Exporter(source, config.eval.export_dir)
                if config.eval.export_dir else None)
    splits.append(EvalSplit(split, evaluator, exporter))
  return splits


def run_evaluations(config, evaluations: list, state, step: int, log: MetricsLog,
                    workdir: str) -> dict:
  """Evaluates `state` on every split and logs one record per split; writes the first
  split's prediction PNGs (workdir/predictions/step_<step>) and the exports. Returns the
  first split's metrics."""
  variables = {"params": state.params, **state.model_state}
  results = []
  for i, split in enumerate(evaluations):
    sinks = [split.exporter] if split.exporter else []
    if i == 0 and config.eval.save_images and is_main():
      sinks.append(evaluate.PredictionImages(
          os.path.join(workdir, "predictions", f"step_{step}"), config.eval.save_images,
          split.evaluator.source.palette))
      if isinstance(log, tensorboard.TensorBoardLog):
        sinks.append(log.prediction_sink(step, config.eval.save_images,
                                         split.evaluator.source.palette))
    result = split.evaluator.run(variables, sinks)
    log.write({"step": int(step), "split": split.name, **result})
    name = split.evaluator.name
    info(f"[{name}] step {step}: mIoU {result['miou']:.4f} pixel acc {result['pixel_acc']:.4f}")
    if split.exporter:
      info(f"[{name}] exported {split.exporter.count} predictions (this process) to "
           f"{split.exporter.dir}")
      split.exporter.count = 0
    results.append(result)
  return results[0]


def _value(config, key: str):
  """config['a.b.c'] for a dotted key."""
  for part in key.split("."):
    config = config[part]
  return config


def _check_int(key: str, value, low: int) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ConfigError(f"config.{key}={value!r}: expected an integer >= {low}")


def _check_pair(key: str, value, low: int) -> None:
  """(H, W) of integers >= low."""
  try:
    ok = len(value) == 2 and all(not isinstance(v, bool) and isinstance(v, (int, np.integer))
                                 and v >= low for v in value)
  except TypeError:
    ok = False
  if not ok:
    raise ConfigError(f"config.{key}={value!r}: expected (H, W), integers >= {low}")


def _check_choice(key: str, value, choices) -> None:
  if value not in choices:
    raise ConfigError(f"config.{key}={value!r}: choose one of {tuple(choices)}")


def check_config(config) -> None:
  """Config values that can be checked without data, before anything is compiled."""
  inference.check_mode(config.eval.mode)
  eval_splits(config.data)
  for key, low in (("train.steps", 1), ("train.batch_size", 1), ("train.log_every", 1),
                   ("train.eval_every", 0), ("checkpoint.every", 1),
                   ("checkpoint.max_to_keep", 1), ("checkpoint.restore_step", 0),
                   ("eval.batch_size", 0), ("eval.num_images", 0), ("eval.save_images", 0),
                   ("data.num_threads", 0), ("seed", 0)):
    _check_int(key, _value(config, key), low)
  _check_pair("data.crop_size", config.data.crop_size, 1)
  _check_pair("data.eval_resize", config.data.eval_resize, 0)
  _check_pair("eval.crop_size", config.eval.crop_size, 1)
  _check_pair("eval.stride", config.eval.stride, 1)
  _check_pair("eval.pad_to", config.eval.pad_to, 0)
  lo_hi = tuple(config.data.scale_range)
  if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] < float("inf"):
    raise ConfigError(f"config.data.scale_range={lo_hi}: expected (low, high) with "
                      f"0 < low <= high")
  if not config.eval.scales or not all(0 < float(x) < float("inf") for x in config.eval.scales):
    raise ConfigError(f"config.eval.scales={tuple(config.eval.scales)}: expected one or more "
                      f"scales > 0")
  for key in ("optim.lr", "optim.end_lr", "optim.momentum", "optim.weight_decay",
              "data.color_jitter", "optim.warmup_steps"):
    value = _value(config, key)
    if not 0 <= float(value) < float("inf"):
      raise ConfigError(f"config.{key}={value!r}: expected a finite number >= 0")
  _check_choice("optim.name", config.optim.name, ("sgd",))
  _check_choice("optim.warmup", config.optim.warmup, ("none", "linear", "exp"))
  _check_choice("loss.ohem", config.loss.ohem, ("none", *losses.OHEMS))
  if not 0 <= float(config.loss.ohem_thresh) <= 1:
    raise ConfigError(f"config.loss.ohem_thresh={config.loss.ohem_thresh!r}: expected a "
                      f"probability in [0, 1]")


# Settings a resumed run may change; any other change of these sections stops the resume
# unless config.checkpoint.allow_changes.
RESUME_CHECKED = ("seed", "model", "data", "loss", "optim", "train.batch_size")
RESUME_FREE = ("data.num_threads", "model.lowering")


def check_resume_config(config, saved: dict, path: str) -> None:
  """Stops a resume whose model, data, loss or optimizer settings differ from the saved ones."""
  changed = checkpoint.changed_keys(saved, config.to_dict(), RESUME_CHECKED, RESUME_FREE)
  if changed and not config.checkpoint.allow_changes:
    raise ConfigError(
        f"the config differs from the one checkpoint {path} was trained with, in "
        f"{', '.join('config.' + k for k in changed)}; resume with the same values, use "
        f"another --workdir, or pass --config.checkpoint.allow_changes=True")
  if changed:
    info(f"resuming with changed {', '.join(changed)} (config.checkpoint.allow_changes)")


def train_and_evaluate(config, workdir: str):
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final
  evaluation metrics of the first eval split (dict). Writes workdir/metrics.jsonl and
  workdir/predictions/. The config and the folders are checked before anything else; the
  workdir is locked against a second run."""
  check_config(config)
  workdir = prepare_workdir(workdir)
  check_writable(os.path.join(workdir, "checkpoints"), "the checkpoint folder")
  if config.eval.export_dir:
    check_writable(os.path.abspath(config.eval.export_dir), "config.eval.export_dir")
  check_shared_workdir(workdir)
  with Lock(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir: str):
  mesh = parallel.make_mesh()
  local_batch = parallel.check_batch_size(config.train.batch_size, mesh)
  train_source = data.build_source(config.data, config.data.train_split, config.seed)
  val_sources = {split: data.build_source(config.data, split, config.seed)
                 for split in eval_splits(config.data)}
  resolve_num_classes(config, train_source)
  losses.resolve_class_weights(config, train_source, workdir, write=is_main())

  model, tx, schedule, abstract_state, image_shape = build(config, mesh)
  total_steps = int(config.train.steps)
  crop = tuple(config.data.crop_size)

  train_iter = iter(data.pipeline.train_dataset(
      train_source, batch_size=local_batch, crop_size=crop,
      scale_range=tuple(config.data.scale_range), flip=config.data.flip,
      color_jitter=config.data.color_jitter, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      num_threads=config.data.num_threads, ignore_label=config.data.ignore_label,
      photometric=config.data.get("photometric", "jitter"),
      cat_max_ratio=config.data.get("cat_max_ratio", 1.0),
      upsize_crop=config.data.get("upsize_crop", False),
      rotate90=config.data.get("rotate90", 0.0)))

  repl = parallel.replicated(mesh)
  with checkpoint.Saver(workdir, config.checkpoint.max_to_keep) as saver:
    step = checkpoint.choose_step(saver.directory, int(config.checkpoint.restore_step))
    if step is not None:
      path = f"{saver.directory}/{step}"
      check_resume_config(config, checkpoint.restore_config(saver.mngr, step), path)
      step, state = checkpoint.restore_train_state(saver.mngr, abstract_state, train_iter, step)
      later = checkpoint.set_aside_later(saver.mngr, step)
      info(f"resumed from {path}" + (f"; checkpoints {later} moved to "
                                     f"{workdir}/checkpoints_set_aside" if later else ""))
    else:
      state = create_state(config, model, tx, mesh, image_shape)
      state = init_pretrained(config, state)
    start = int(jax.device_get(state.step))
    saver.last_saved = step
    dropped = truncate_metrics(workdir, start)
    if dropped:
      info(f"moved {dropped} records of metrics.jsonl after step {start} (logged after the "
           f"last checkpoint) to {workdir}/metrics_set_aside.jsonl")

    train_step = jax.jit(make_train_step(
        model, tx, schedule, config.loss, config.data.ignore_label, mesh,
        config.train.get("per_device_batch_norm", False)),
                         in_shardings=(repl, parallel.data_sharded(mesh), repl),
                         out_shardings=(repl, repl), donate_argnums=(0,))
    evaluations = make_evaluations(config, model, mesh, val_sources)
    log = tensorboard.metrics_log(config, workdir, train_source.class_names)
    rng = jax.random.key(config.seed + 1)
    eval_every = int(config.train.eval_every)
    result = {}
    if start >= total_steps:
      info(f"already trained {start} / {total_steps} steps")
      return run_evaluations(config, evaluations, state, start, log, workdir)

    timer = Progress(total_steps, start, "train")
    with _Preemption() as preemption:
      unchecked = None  # the previous step's finite flag, read one step late: no device wait
      for step in range(start + 1, total_steps + 1):
        batch = parallel.global_batch(next(train_iter), mesh)
        state, metrics = train_step(state, batch, rng)
        metrics = dict(metrics)
        if unchecked:
          check_finite(*unchecked, saver)
        unchecked = (step, metrics.pop("finite"), metrics["loss"])
        if step % config.train.log_every == 0 or step == total_steps:
          check_finite(*unchecked, saver)
          m = jax.device_get(metrics)
          img_per_s = timer.update(step, config.train.batch_size)
          record = {"step": step, **{k: float(v) for k, v in m.items()},
                    "img_per_s": img_per_s}
          log.write(record)
        stop = preemption.check(step)
        if step % config.checkpoint.every == 0 or step == total_steps or stop:
          check_finite(*unchecked, saver)
          saver.save(step, state, train_iter, config)
        else:
          saver.poll()
        if stop:
          saver.wait()
          info(f"{preemption.signal.name}: saved checkpoint {step} in {saver.directory}; "
               f"exiting")
          raise SystemExit(128 + preemption.signal)
        if (eval_every and step % eval_every == 0) or step == total_steps:
          result = run_evaluations(config, evaluations, state, step, log, workdir)
  return result


def check_finite(step: int, finite, loss, saver) -> None:
  """DivergedError naming `step` if its loss, gradients or new state are not all finite,
  once the save in flight (of an earlier, finite state) has finished."""
  if bool(finite):
    return
  saver.wait()
  raise DivergedError(
      f"step {step}: the loss ({float(loss):g}) or the gradients are not finite (too high a "
      f"config.optim.lr?); stopped without saving it; the last good checkpoint is "
      f"{checkpoint.describe_last(saver.directory, saver.last_saved)}")


def restore_latest(config, workdir: str, mesh):
  """(model, state, step) of the latest checkpoint in `workdir`, replicated on `mesh`, for
  `--mode=eval`, notebooks and scripts; `config.model.num_classes` must be resolved."""
  mngr = checkpoint.manager(workdir)
  step = checkpoint.choose_step(str(mngr.directory), int(config.checkpoint.restore_step))
  if step is None:
    raise NotFoundError(f"no checkpoint in {mngr.directory}")
  model, _, _, abstract_state, _ = build(config, mesh)
  step, state = checkpoint.restore_train_state(mngr, abstract_state, step=step)
  mngr.close()
  return model, state, step


def evaluate_checkpoint(config, workdir: str):
  """`--mode=eval`: evaluates the latest checkpoint of `workdir` on the evaluation splits;
  with no checkpoint there, the weights `config.init.checkpoint` names (converted by
  `python -m flaseg.convert`), logged as step 0."""
  check_config(config)
  workdir = abs_workdir(workdir)
  trained = os.path.isdir(os.path.join(workdir, "checkpoints"))
  if not trained and not config.init.checkpoint:
    raise NotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')} and no "
                        f"config.init.checkpoint to evaluate")
  if not trained:
    prepare_workdir(workdir)
  check_shared_workdir(workdir)
  mesh = parallel.make_mesh()
  val_sources = {split: data.build_source(config.data, split, config.seed)
                 for split in eval_splits(config.data)}
  resolve_num_classes(config, next(iter(val_sources.values())))
  if trained:
    model, state, step = restore_latest(config, workdir, mesh)
  else:
    model, tx, _, _, image_shape = build(config, mesh)
    state = init_pretrained(config, create_state(config, model, tx, mesh, image_shape))
    step = 0
  evaluations = make_evaluations(config, model, mesh, val_sources)
  log = tensorboard.metrics_log(config, workdir, next(iter(val_sources.values())).class_names)
  return run_evaluations(config, evaluations, state, step, log, workdir)
