r"""Trains the sparse codec.

  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python train.py --config configs/musicnet.py --workdir runs/musicnet \
      --config.data.root=/data/musicnet
  python train.py --config configs/musicnet.py:paper ... --distributed   # Cloud TPU VM pods
  python train.py ... --coordinator_address=HOST0:PORT --num_processes=2 --process_id=0  # and =1

Rerunning the same command resumes from the last checkpoint in --workdir; with
--stop_after_minutes=M a run saves a checkpoint and stops after about M minutes.
"""
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from sparse_jax import xla_flags

xla_flags.set_for_this_process()

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config and metrics go.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() (multi-host pods).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "host:port that process 0 serves the run's coordination on (several processes without a "
    "pod's auto-detection; with --num_processes and --process_id).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Number of processes of a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index in [0, --num_processes).")
_INIT_FROM = flags.DEFINE_string(
    "init_from", None, "A new run starts from this trained model's generator (an exported .npz "
    "or a workdir; fresh discriminator and optimisers): continue the shipped model "
    "(sparse_jax/pretrained/model.npz with configs/pretrained.py) or fine-tune it on your music. "
    "Ignored when the workdir already holds checkpoints (they resume).")
_STOP_AFTER = flags.DEFINE_float(
    "stop_after_minutes", None,
    "Save a checkpoint and stop at the first logging step after this many minutes (a GPU lease, "
    "a preemptible VM); the same command resumes.")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _config_spec(argv) -> str | None:
  """The value of --config in argv ('FILE.py' or 'FILE.py:PRESET')."""
  for i, arg in enumerate(argv):
    if arg.startswith(("--config=", "-config=")):
      return arg.split("=", 1)[1]
    if arg in ("--config", "-config") and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _unknown_override_message(argv) -> str | None:
  """One line naming a --config.X override whose field the config lacks, with a suggestion."""
  from sparse_jax import config
  spec = _config_spec(argv)
  if spec is None:
    return None
  cfg = flags.FLAGS["config"].parser.parse(spec)
  for arg in argv:
    match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
    if match:
      message = config.unknown_field(cfg, match.group(1), spec)
      if message:
        return message
  return None


def parse_flags(argv):
  """absl's flag parsing, with every mistake reported as one `error:` line and status 2."""
  try:
    args = flags.FLAGS(argv)
  except flags.Error as e:  # a bad value, an unknown or missing flag, a config that raised
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    # A config file's own exception arrives as a traceback: its last line says what is wrong.
    text = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    _fail(f"{text.rstrip('. ')}; see python train.py --helpshort")
  except (KeyError, AttributeError) as e:
    # ml_collections raises these from inside parsing for an override naming no config field;
    # the message it builds spans lines and does not say which flag.
    _fail(_unknown_override_message(argv) or str(e).splitlines()[0])
  try:
    _CONFIG.value.keys()  # a config file that failed to load raises only when first used
  except OSError as e:
    reason = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
    _fail(f"--config {_config_spec(argv)}: cannot load it ({reason}); check the path")
  return args


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  import jax

  from sparse_jax import training
  from sparse_jax.errors import UserError
  try:
    explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if any(v is not None for v in explicit):
      if any(v is None for v in explicit):
        raise UserError("--coordinator_address, --num_processes and --process_id go together: "
                        "pass all three (the same address and count to every process)")
      if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
        raise UserError(f"--process_id={_PROCESS_ID.value} must be in [0, --num_processes="
                        f"{_NUM_PROCESSES.value})")
      jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                 num_processes=_NUM_PROCESSES.value,
                                 process_id=_PROCESS_ID.value)
    elif _DISTRIBUTED.value:
      jax.distributed.initialize()  # the pod's own description of its hosts
    if _STOP_AFTER.value is not None and not _STOP_AFTER.value > 0:
      raise UserError(f"--stop_after_minutes={_STOP_AFTER.value} must be positive")
    stop_after_s = None if _STOP_AFTER.value is None else 60 * _STOP_AFTER.value
    training.train_and_evaluate(_CONFIG.value, _WORKDIR.value, log=training.log_to_stderr,
                                progress=True, stop_after_s=stop_after_s,
                                init_from=_INIT_FROM.value)
  except UserError as e:
    _fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
