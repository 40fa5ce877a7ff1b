"""flaseg command line.

  python -m flaseg.main --config=configs/quickstart.py --workdir=runs/quickstart
  python -m flaseg.main --config=configs/fla_cityscapes.py:smoke --workdir=/tmp/x \
      --config.train.steps=20
  python -m flaseg.main --config=configs/quickstart.py --workdir=runs/quickstart --mode=eval

Multi-host (one process per host, same command on every host; README "Multi-host"):

  python -m flaseg.main --config=... --workdir=SHARED_DIR --jax_distributed     # Cloud TPU, SLURM
  python -m flaseg.main --config=... --workdir=SHARED_DIR --jax_distributed \
      --coordinator_address=HOST0:1234 --num_processes=2 --process_id=0        # anywhere else
"""
import logging as std_logging
import os
import sys
import threading

from absl import app, flags, logging
from ml_collections import config_flags

from flaseg.errors import ConfigError, UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/quickstart.py[:arg].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics.jsonl and predictions go here.")
flags.DEFINE_enum("mode", "train", ["train", "eval"],
                  "train (resumes automatically) or eval (the latest checkpoint in workdir).")
flags.DEFINE_bool("jax_distributed", os.environ.get("FLASEG_JAX_DISTRIBUTED", "") == "1",
                  "Call jax.distributed.initialize() first (multi-host; env "
                  "FLASEG_JAX_DISTRIBUTED=1). Cloud TPU VMs, SLURM and Open MPI need nothing else.")
flags.DEFINE_string("coordinator_address", os.environ.get("FLASEG_COORDINATOR") or None,
                    "host:port of process 0, reachable from every process "
                    "(env FLASEG_COORDINATOR); implies --jax_distributed.")
flags.DEFINE_integer("num_processes", None,
                     "Number of processes (env FLASEG_NUM_PROCESSES); implies --jax_distributed.")
flags.DEFINE_integer("process_id", None,
                     "This process's id, 0..num_processes-1 (env FLASEG_PROCESS_ID); "
                     "implies --jax_distributed.")
flags.mark_flags_as_required(["config", "workdir"])

class _OrbaxSaveThreadErrors(std_logging.Filter):
  """Drops the errors orbax logs (with their traceback) from its background save threads:
  `wait_until_finished` raises them again and flaseg reports them in one line."""

  def filter(self, record):
    return not (record.levelno >= std_logging.ERROR and "orbax" in record.pathname
                and record.threadName != "MainThread")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file it renames at INFO.
  logging.get_absl_handler().addFilter(_OrbaxSaveThreadErrors())
  try:
    init_distributed()
  except (ValueError, TypeError, RuntimeError) as e:  # e.g. no coordinator, unreachable
    fail(UserError(f"jax.distributed.initialize: {one_line(e)}"))
  from flaseg import train
  try:
    if FLAGS.mode == "train":
      train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    else:
      train.evaluate_checkpoint(FLAGS.config, FLAGS.workdir)
  except UserError as e:  # bad input, found where it is checked; anything else is a bug
    fail(e)


def _env_int(name):
  value = os.environ.get(name, "")
  try:
    return int(value) if value else None
  except ValueError:
    raise ConfigError(f"{name}={value!r} is not an integer") from None


def init_distributed():
  """`jax.distributed.initialize()` when asked for, with whatever of coordinator address,
  number of processes and process id the flags or FLASEG_* variables give (JAX detects the
  rest on Cloud TPU, SLURM and Open MPI). Before any other JAX call."""
  kwargs = {"coordinator_address": FLAGS.coordinator_address,
            "num_processes": (FLAGS.num_processes if FLAGS.num_processes is not None
                              else _env_int("FLASEG_NUM_PROCESSES")),
            "process_id": (FLAGS.process_id if FLAGS.process_id is not None
                           else _env_int("FLASEG_PROCESS_ID"))}
  kwargs = {k: v for k, v in kwargs.items() if v is not None}
  if not (FLAGS.jax_distributed or kwargs):
    return
  import jax
  jax.distributed.initialize(**kwargs)


def one_line(e: BaseException) -> str:
  """An exception as one line: the last line of an embedded traceback, whitespace folded."""
  text = str(e.args[0]) if isinstance(e, (KeyError, AttributeError)) and e.args else str(e)
  if isinstance(e, AttributeError) and e.args and isinstance(e.args[0], KeyError):
    text = str(e.args[0].args[0])  # ml_collections wraps a KeyError
  if "Traceback" in text:
    text = [line for line in text.splitlines() if line.strip()][-1]
  return " ".join(text.split())


def fail(e: BaseException):
  if os.environ.get("FLASEG_DEBUG"):
    raise e
  print(f"flaseg: error: {one_line(e)}", file=sys.stderr)
  quiet_exit(2)


def quiet_exit(status: int):
  """Exits with nothing printed after the message: orbax's background futures and asyncio
  would report a failed save again while the interpreter shuts down (the save is already
  finished or removed by then: the trainer's `with` blocks have run). A single process ends
  at once (`os._exit`), so that no background thread prints while the interpreter finalises
  (a failed save's threads print "Event loop is closed" tracebacks there); several processes
  exit normally, so that jax.distributed's shutdown still runs."""
  std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL + 1)
  logging.set_verbosity(logging.FATAL)
  sys.unraisablehook = lambda unraisable: None
  threading.excepthook = lambda args: None
  sys.stdout.flush()
  sys.stderr.flush()
  if "jax" not in sys.modules or sys.modules["jax"].process_count() == 1:
    os._exit(status)
  sys.exit(status)


def parse_flags(argv):
  """absl flag parsing, with a bad config file, arg or `--config.key=value` as one line."""
  for i, arg in enumerate(argv[1:], 1):
    if arg in ("--config", "-config") and i + 1 < len(argv):  # absl also takes `--config PATH`
      arg = "--config=" + argv[i + 1]
    if arg.startswith("--config="):
      path = arg[len("--config="):].split(":")[0]
      if not os.path.isfile(path):
        fail(ConfigError(f"--config: no such config file {path}"))
  try:
    return FLAGS(argv)
  except (KeyError, AttributeError) as e:  # ml_collections: `--config.key=...` unknown
    text = one_line(e)
    fail(ConfigError(text if "config" in text else f"unknown config key {text}"))
  except (flags.Error, TypeError, ValueError) as e:  # bad flag, bad value type, bad config arg
    fail(e)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
