"""Orbax `CheckpointManager` over the train state, the grain iterator and the config.

Layout: `workdir/checkpoints/<step>/{state, data_iter, config}`. Orbax writes each step to a
temporary folder and renames it when complete, so a run killed mid-save leaves the earlier
checkpoints intact and a restart resumes from the latest complete one.

Multi-host: every process calls `save` and `restore` (orbax synchronises them); the state is
replicated, so it can be restored by any number of processes (e.g. `--mode=eval` on one
host), while `data_iter` holds one position per process (`process_<i>-of-<n>.json`) and
resuming training needs the same number of processes.
"""
import os
import re

import grain
import jax
import orbax.checkpoint as ocp

from flaseg.errors import NotFoundError, UserError


class CheckpointError(UserError, RuntimeError):
  """A checkpoint exists but cannot be restored (corrupt, or from another model/config)."""


def manager(workdir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def save_train_state(mngr, step: int, state, data_iter, config) -> None:
  """Saves the train state, the grain iterator's position and the config as checkpoint
  `step` (asynchronously: `mngr.wait_until_finished()` before exiting)."""
  args = {"state": ocp.args.StandardSave(state),
          "config": ocp.args.JsonSave(config.to_dict())}
  if data_iter is not None:
    args["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
  mngr.save(step, args=ocp.args.Composite(**args), force=True)


def restore_train_state(mngr, abstract_state, data_iter=None, step=None):
  """Restores into `abstract_state` (shapes, dtypes and shardings) and, if given, positions
  `data_iter` where the saved run would have continued. Returns (step, state)."""
  step = mngr.latest_step() if step is None else step
  path = os.path.join(str(mngr.directory), str(step))
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


def saved_config(workdir: str, step=None) -> dict:
  """The config (a dict, as saved) of checkpoint `step` (default: the latest) in `workdir`."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise NotFoundError(f"no checkpoint in {os.path.join(workdir, 'checkpoints')}")
  mngr = manager(workdir)
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise NotFoundError(f"no checkpoint in {mngr.directory}")
  config = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
  mngr.close()
  return config


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
