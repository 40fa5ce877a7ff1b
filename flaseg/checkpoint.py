"""Orbax `CheckpointManager` over the train state, the grain iterator and the config.

Layout: `workdir/checkpoints/<step>/{state, data_iter, config}`. Orbax writes each step to a
temporary folder and renames it when complete, so a run killed mid-save leaves the earlier
checkpoints intact and a restart resumes from the latest complete one.
"""
import os

import grain
import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored (corrupt, or from another model/config)."""


def manager(workdir: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options)


def save(mngr, step: int, state, data_iter, config) -> None:
  args = {"state": ocp.args.StandardSave(state),
          "config": ocp.args.JsonSave(config.to_dict())}
  if data_iter is not None:
    args["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
  mngr.save(step, args=ocp.args.Composite(**args), force=True)


def restore(mngr, abstract_state, data_iter=None, step=None):
  """Restores into `abstract_state` (shapes, dtypes and shardings) and, if given, positions
  `data_iter` where the saved run would have continued. Returns (step, state)."""
  step = mngr.latest_step() if step is None else step
  path = os.path.join(str(mngr.directory), str(step))
  args = {"state": ocp.args.StandardRestore(
      jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state))}
  if data_iter is not None:
    args["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(**args))
  except Exception as e:  # orbax raises many types; the user needs the path and the cause.
    reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    raise CheckpointError(f"cannot restore checkpoint {path}: {reason}") from e
  return step, restored["state"]
