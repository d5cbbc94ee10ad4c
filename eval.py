r"""Evaluates a trained codec: per-step energy removal and reconstruction metrics.

  python eval.py --workdir runs/quickstart [--split test] [--clips 16]
  python eval.py --workdir sparse_jax/pretrained/model.npz --data_name classical --out DIR
  python eval.py --workdir runs/quickstart --at_onsets --out DIR   # events only at onsets

Writes WORKDIR/eval/metrics.json and WORKDIR/eval/curve.png.  Everything needed (the config and
the checkpoint) is read from the workdir, or from an exported generator file (.npz).
"""
import sys

from absl import app, flags, logging

from sparse_jax import xla_flags

xla_flags.set_for_this_process()

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_SPLIT = flags.DEFINE_string("split", "test", "Held-out 'test' split, or 'train'.")
_CLIPS = flags.DEFINE_integer("clips", None, "Number of clips (default: config train.eval_clips).")
_UNTRAINED = flags.DEFINE_bool("compare_untrained", True, "Also evaluate a fresh init.")
_DATA_NAME = flags.DEFINE_string("data_name", None, "Evaluate on this dataset instead of the "
                                 "config's (e.g. classical: the embedded test split).")
_DATA_ROOT = flags.DEFINE_string("data_root", None, "... at this root instead of the config's.")
_AT_ONSETS = flags.DEFINE_bool("at_onsets", None, "Score with the onset rule (events only near "
                                "onsets, codec/onsets.py) or without it (default: as the model "
                                "was trained, loss.events_at_onsets).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/eval, or the .npz "
                           "file's folder/eval).")
flags.mark_flags_as_required(["workdir"])


def parse_flags(argv):
  """absl's flag parsing, with a mistake reported as one `error:` line and status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {str(e).rstrip('. ')}; see python eval.py --helpshort", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  from sparse_jax import evaluation
  from sparse_jax.errors import UserError
  try:
    evaluation.check_split(_SPLIT.value)
    overrides = {k: v for k, v in (("name", _DATA_NAME.value), ("root", _DATA_ROOT.value))
                 if v is not None}
    if _DATA_NAME.value is not None and _DATA_ROOT.value is None:
      overrides["root"] = ""  # that dataset's own default location
    evaluation.evaluate(_WORKDIR.value, _SPLIT.value, _CLIPS.value, _UNTRAINED.value,
                        log=lambda m: print(m, file=sys.stderr, flush=True),
                        data_overrides=overrides, out_dir=_OUT.value,
                        at_onsets=_AT_ONSETS.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    _leave(2)
  _leave(0)


def _leave(code: int):
  from sparse_jax import checkpoint
  checkpoint.leave_quietly_after_a_failed_restore(code)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
