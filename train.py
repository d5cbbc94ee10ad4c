r"""Trains the sparse codec.

  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python train.py --config configs/musicnet.py --workdir runs/musicnet \
      --config.data.root=/data/musicnet
  python train.py --config configs/musicnet.py:paper ... --distributed   # Cloud TPU VM pods

Rerunning the same command resumes from the last checkpoint in --workdir.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, config and metrics go.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Call jax.distributed.initialize() (multi-host pods).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  import jax
  from sparse_jax import training
  from sparse_jax.errors import UserError
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  try:
    training.train_and_evaluate(_CONFIG.value, _WORKDIR.value, log=training.log_to_stderr)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
