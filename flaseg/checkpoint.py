"""Orbax `CheckpointManager` over the train state, the grain iterator and the config.

Layout: `workdir/checkpoints/<step>/{state, data_iter, config, flaseg_sha256.json}`. Orbax
writes each step to a temporary folder and renames it when complete, so a run killed mid-save
leaves the earlier checkpoints intact and a restart resumes from the latest complete one; the
checksums of every file, written when the save has finished, are verified before a restore, so
a damaged checkpoint is named and never restored (`choose_step`).

Multi-host: every process calls `save` and `restore` (orbax synchronises them); the state is
replicated, so it can be restored by any number of processes (e.g. `--mode=eval` on one
host), while `data_iter` holds one position per process (`process_<i>-of-<n>.json`) and
resuming training needs the same number of processes.
"""
import hashlib
import json
import os
import re
import shutil
from typing import Optional

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from flaseg.errors import NotFoundError, UserError
from flaseg.reporting import is_main

CHECKSUMS = "flaseg_sha256.json"  # in each step folder: {file path: sha256} of every file


class CheckpointError(UserError, RuntimeError):
  """A checkpoint exists but cannot be restored (corrupt, or from another model/config), or
  cannot be saved (disk full, read-only)."""


def manager(workdir: str) -> ocp.CheckpointManager:
  """Orbax's manager of workdir/checkpoints; it never deletes anything (`Saver` rotates)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e).split())
  if len(text) > 300:  # the cause is often at the end (tensorstore: '... File too large')
    text = f"{text[:120]} ... {text[-180:]}"
  return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ---------------------------------------------------------------------------------------
# Checksums.

def file_checksums(step_dir: str) -> dict:
  """{path relative to `step_dir`: sha256 hex} of every file of a checkpoint."""
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel in (CHECKSUMS, CHECKSUMS + ".tmp"):
        continue
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
      out[rel] = digest.hexdigest()
  return dict(sorted(out.items()))


def write_checksums(step_dir: str) -> None:
  """Writes `step_dir/flaseg_sha256.json` (atomically: a partial file never exists)."""
  sums = file_checksums(step_dir)
  tmp = os.path.join(step_dir, CHECKSUMS + ".tmp")
  with open(tmp, "w") as f:
    json.dump(sums, f, indent=0)
  os.replace(tmp, os.path.join(step_dir, CHECKSUMS))


def verify(step_dir: str) -> Optional[str]:
  """None if every file of the checkpoint has its saved checksum, else what is wrong
  ('no checksums' for a checkpoint saved before they were written, or whose writer was killed
  between orbax's commit and the checksums)."""
  path = os.path.join(step_dir, CHECKSUMS)
  if not os.path.isfile(path):
    return "no checksums"
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    return f"unreadable {CHECKSUMS}: {_one_line(e)}"
  now = file_checksums(step_dir)
  for rel, digest in saved.items():
    if rel not in now:
      return f"file {rel} is missing"
    if now[rel] != digest:
      return f"file {rel} has changed since it was saved (sha256 differs)"
  return None


def saved_steps(directory: str) -> list:
  """The steps of the complete checkpoints in `directory` (orbax's tmp folders excluded)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def verified_steps(directory: str) -> list:
  return [s for s in saved_steps(directory) if verify(os.path.join(directory, str(s))) is None]


# ---------------------------------------------------------------------------------------
# Saving.

class Saver:
  """Asynchronous saves of the train state that are sealed with checksums, rotated safely,
  and never left half-written.

  When orbax has finished a save (`poll`, called every step, or `wait`), process 0 writes the
  checksums of its files and removes the checkpoints older than the `max_to_keep` newest
  verified ones, so the last verified checkpoint is never deleted. `close` (on every exit
  path) waits for the save in flight; a save that failed is reported as a CheckpointError and
  its unfinished folder removed.
  """

  def __init__(self, workdir: str, max_to_keep: int):
    self.mngr = manager(workdir)
    self.directory = str(self.mngr.directory)
    self.max_to_keep = int(max_to_keep)
    self.in_flight = None  # the step being saved
    self.last_saved = None  # the step of the newest complete checkpoint (restored or saved)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.close()
      return False
    try:
      self.close()
    except CheckpointError:
      pass  # the first error is the one reported; the unfinished save is removed
    return False

  def save(self, step: int, state, data_iter, config) -> None:
    self.wait()  # orbax would wait for the previous save anyway
    self.in_flight = step
    try:
      save_train_state(self.mngr, step, state, data_iter, config)
    except Exception as e:  # e.g. the directory became read-only; orbax raises many types
      self._failed(e)

  def poll(self) -> None:
    """Seals the save in flight if orbax has finished it (never waits)."""
    if self.in_flight is not None and not self.mngr.is_saving_in_progress():
      if os.path.isdir(os.path.join(self.directory, str(self.in_flight))):
        self._seal()
      # otherwise it failed: `wait` reports it

  def wait(self) -> None:
    """Waits for the save in flight and seals it; CheckpointError if it failed."""
    if self.in_flight is None:
      return
    try:
      self.mngr.wait_until_finished()
    except Exception as e:
      self._failed(e)
    if not os.path.isdir(os.path.join(self.directory, str(self.in_flight))):
      self._failed(RuntimeError("orbax did not write it"))
    self._seal()

  def close(self) -> None:
    """Waits for the save in flight (CheckpointError if it failed) and closes orbax."""
    try:
      self.wait()
    finally:
      self.in_flight = None
      self.mngr.close()

  def _seal(self) -> None:
    step, self.in_flight = self.in_flight, None
    if is_main():
      write_checksums(os.path.join(self.directory, str(step)))
      self._rotate()
    self.last_saved = step

  def _rotate(self) -> None:
    # Sealed checkpoints (with checksums); the newest was verified by computing them just now.
    sealed = [s for s in saved_steps(self.directory)
              if os.path.isfile(os.path.join(self.directory, str(s), CHECKSUMS))]
    if not sealed:
      return
    first_kept = sealed[-self.max_to_keep:][0]
    for step in saved_steps(self.directory):
      if step < first_kept:
        # Renamed first, so that a kill while deleting never leaves a half checkpoint.
        gone = os.path.join(os.path.dirname(self.directory), f".deleting_checkpoint_{step}")
        os.replace(os.path.join(self.directory, str(step)), gone)
        shutil.rmtree(gone, ignore_errors=True)
    self.mngr.reload()

  def _failed(self, e: BaseException):
    step, self.in_flight = self.in_flight, None
    if is_main():
      remove_unfinished(self.directory)
    raise CheckpointError(f"cannot save checkpoint {self.directory}/{step}: {_one_line(e)}; "
                          f"the last complete checkpoint is "
                          f"{describe_last(self.directory, self.last_saved)}") from e


def describe_last(directory: str, step) -> str:
  return f"{directory}/{step}" if step is not None else f"none (no checkpoint in {directory})"


def remove_unfinished(directory: str) -> None:
  """Removes orbax's temporary folders (saves that never finished) from `directory`."""
  if os.path.isdir(directory):
    for name in os.listdir(directory):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def save_train_state(mngr, step: int, state, data_iter, config) -> None:
  """Saves the train state, the grain iterator's position and the config as checkpoint
  `step` (asynchronously: `mngr.wait_until_finished()` before exiting)."""
  args = {"state": ocp.args.StandardSave(state),
          "config": ocp.args.JsonSave(config.to_dict())}
  if data_iter is not None:
    args["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
  mngr.save(step, args=ocp.args.Composite(**args), force=True)


# ---------------------------------------------------------------------------------------
# Restoring.

def choose_step(directory: str, restore_step: int = 0) -> Optional[int]:
  """The checkpoint to restore: `restore_step` (config.checkpoint.restore_step) or, for 0, the
  latest; None if there is none. The chosen checkpoint must verify: one that fails is named
  with the steps of the earlier ones that verify."""
  steps = saved_steps(directory)
  if restore_step:
    if restore_step not in steps:
      raise NotFoundError(f"config.checkpoint.restore_step={restore_step}: no checkpoint "
                          f"{directory}/{restore_step}; saved steps: {steps or 'none'}")
    step = restore_step
  elif not steps:
    return None
  else:
    step = steps[-1]
  problem = verify(os.path.join(directory, str(step)))
  if problem == "no checksums":
    logging.warning("checkpoint %s/%d has no checksums (saved by an older flaseg, or the run "
                    "was killed right after saving it): restored unverified", directory, step)
  elif problem:
    good = [s for s in verified_steps(directory) if s < step]
    earlier = (f"earlier checkpoints that verify: steps {', '.join(map(str, good))}; resume "
               f"from one with --config.checkpoint.restore_step={good[-1]}" if good else
               "no earlier checkpoint verifies")
    raise CheckpointError(f"checkpoint {directory}/{step} is corrupt: {problem}; {earlier}")
  return step


def _shapes(tree) -> dict:
  """{'params/backbone/.../kernel': (shape, dtype)} of the params and model_state leaves."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  out = {}
  for path, leaf in flat:
    key = jax.tree_util.keystr(path, simple=True, separator="/")
    if key.split("/")[0] in ("params", "model_state"):
      out[key] = (tuple(leaf.shape), str(leaf.dtype))
  return out


def check_tree(path: str, abstract_state) -> None:
  """A CheckpointError naming the first parameter whose presence or shape differs between
  checkpoint `path` and the model."""
  try:
    saved = _shapes(ocp.StandardCheckpointHandler().metadata(
        epath.Path(path) / "state").tree)
  except Exception as e:  # noqa: BLE001 -- the restore below reports unreadable files
    del e
    return
  model = _shapes(abstract_state)
  for key in sorted(set(saved) | set(model), key=lambda k: (not k.startswith("params"), k)):
    if saved.get(key) != model.get(key):
      show = lambda v: "absent" if v is None else f"{v[1]}{list(v[0])}"
      raise CheckpointError(
          f"checkpoint {path} does not fit the model: {key} is {show(saved.get(key))} in the "
          f"checkpoint but {show(model.get(key))} in the model (another model config?)")


def restore_train_state(mngr, abstract_state, data_iter=None, step=None):
  """Restores into `abstract_state` (shapes, dtypes and shardings) and, if given, positions
  `data_iter` where the saved run would have continued. Returns (step, state)."""
  step = mngr.latest_step() if step is None else step
  path = os.path.join(str(mngr.directory), str(step))
  check_tree(path, abstract_state)
  args = {"state": ocp.args.StandardRestore(
      jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state))}
  if data_iter is not None:
    _check_process_count(path)
    args["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(**args))
  except Exception as e:  # orbax raises many types; the user needs the path and the cause.
    reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    raise CheckpointError(f"cannot restore checkpoint {path}: {reason}") from e
  return step, restored["state"]


def restore_config(mngr, step: int) -> dict:
  """The config (a dict, as saved) of checkpoint `step`."""
  return mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]


def saved_config(workdir: str, step=None) -> dict:
  """The config (a dict, as saved) of checkpoint `step` (default: the latest) in `workdir`."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise NotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
  mngr = manager(workdir)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise NotFoundError(f"no checkpoint in {mngr.directory}")
  config = restore_config(mngr, step)
  mngr.close()
  return config


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def changed_keys(saved: dict, new: dict, checked, free) -> list:
  """The config keys under `checked` (prefixes such as 'model' or 'train.batch_size') whose
  values differ between the saved config and the new one, except those under `free`."""
  norm = lambda d: _flat(json.loads(json.dumps(d)))  # tuples -> lists, as saved
  a, b = norm(saved), norm(new)
  under = lambda key, prefixes: any(key == p or key.startswith(p + ".") for p in prefixes)
  return [k for k in sorted(set(a) | set(b))
          if under(k, checked) and not under(k, free) and a.get(k) != b.get(k)]


def set_aside_later(mngr, step: int) -> list:
  """Moves the checkpoints after `step` (the one resumed from) to
  workdir/checkpoints_set_aside/, where nothing overwrites them; returns their steps."""
  directory = str(mngr.directory)
  later = [s for s in saved_steps(directory) if s > step]
  if later and is_main():
    aside = os.path.join(os.path.dirname(directory), "checkpoints_set_aside")
    os.makedirs(aside, exist_ok=True)
    for s in later:
      target, n = os.path.join(aside, str(s)), 1
      while os.path.exists(target):
        target, n = os.path.join(aside, f"{s}.{n}"), n + 1
      shutil.move(os.path.join(directory, str(s)), target)
  mngr.reload()
  return later


def _check_process_count(path: str) -> None:
  """A clear error when resuming training with another number of processes than saved."""
  folder = os.path.join(path, "data_iter")
  names = os.listdir(folder) if os.path.isdir(folder) else []
  pattern = re.compile(r"process_\d+-of-(\d+)\.json$")
  counts = {int(m.group(1)) for m in map(pattern.match, names) if m}
  if counts and jax.process_count() not in counts:
    raise CheckpointError(
        f"cannot resume checkpoint {path} with {jax.process_count()} process(es): it was written "
        f"by {max(counts)} (the input position is saved per process); resume with "
        f"{max(counts)} processes, or evaluate it with --mode=eval")
