r"""Replace the shipped model only with a better one, judged on real recordings.

  python -m benchmarks.promote CANDIDATE.npz --real DIR [DIR ...] [--apply] [--note "lease 3"]

Both models (the shipped `sparse_jax/pretrained/model.npz` and the candidate, e.g. what
`scripts/train_in_lease.sh` exported after `train.py --init_from`) encode the same seeded clips of
`benchmarks.quality --real` (20 clips of 8 s by default, the benchmark's own rule, plain encode at
the model's events per window, through 8-bit `.sjx` bytes) and are scored on the headline figures:
spectral L1 explained (higher), log-mel (lower) and whole-clip ViSQOL (higher; left out, and said,
when visqol-python is missing).  The candidate is better when it is at least as good on every one
and better on one.  With `--apply` a better candidate replaces the shipped file (atomically); every
run, promoted or not, appends a row to `docs/leases.md`: date, candidate, its step, its figures
and the shipped model's, and the verdict.
"""
import argparse
import datetime
import os
import shutil
import sys

import numpy as np

from benchmarks import one_line_errors, quality
from sparse_jax.errors import UserError

LEDGER = os.path.join("docs", "leases.md")
LEDGER_HEAD = """# Every candidate for the shipped model

Written by `python -m benchmarks.promote` (one row per run): the candidate's figures against the
shipped model's on the same real clips (means; ViSQOL on whole clips), and whether it replaced it.

| date | candidate | step | explained | log-mel | ViSQOL | shipped: explained / log-mel / ViSQOL | verdict | note |
|---|---|---|---|---|---|---|---|---|
"""


def score(codec, clips, visqol: bool) -> dict:
  """Mean headline figures of `codec` over the clips (plain encode, 8-bit bytes)."""
  rows = []
  for clip in clips:
    clip_T = quality.load_clip(clip, codec.sample_rate)
    decoded = quality.run_ours_at(codec, clip_T, codec.cfg.model.n_events)["decoded"]
    rows.append(quality.real_metrics(clip_T, decoded, codec.sample_rate,
                                     clip_T.size / codec.sample_rate if visqol else None))
  return {key: (float(np.mean([r[key] for r in rows])) if rows[0][key] is not None else None)
          for key in quality.REAL_HEADLINE}


def verdict(candidate: dict, shipped: dict) -> tuple[bool, str]:
  """(promote?, why): at least as good on every figure measured and better on one."""
  worse: list[str] = []
  better: list[str] = []
  for key in quality.REAL_HEADLINE:
    if candidate[key] is None or shipped[key] is None:
      continue
    delta = candidate[key] - shipped[key]
    delta = delta if quality.HIGHER_IS_BETTER[key] else -delta
    (better if delta > 0 else worse if delta < 0 else []).append(key)
  if worse:
    return False, f"kept the shipped model: worse on {', '.join(worse)}"
  if not better:
    return False, "kept the shipped model: no figure better"
  return True, f"promoted: better on {', '.join(better)}, worse on none"


def _row(candidate_path, step, candidate, shipped, why, note) -> str:
  f = lambda d, k, fmt: "-" if d[k] is None else format(d[k], fmt)
  return (f"| {datetime.date.today().isoformat()} | `{candidate_path}` | {step} | "
          f"{100 * candidate['explained']:.1f} % | {f(candidate, 'log_mel', '.3f')} | "
          f"{f(candidate, 'visqol', '.3f')} | {100 * shipped['explained']:.1f} % / "
          f"{f(shipped, 'log_mel', '.3f')} / {f(shipped, 'visqol', '.3f')} | {why} | {note} |\n")


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("candidate", help="the exported generator (.npz) that may replace the shipped one")
  p.add_argument("--real", nargs="+", required=True, metavar="DIR",
                 help="folders of real recordings (the benchmark's clips; kept out of training)")
  p.add_argument("--clips", type=int, default=quality.REAL_CLIPS)
  p.add_argument("--seconds", type=float, default=quality.REAL_SECONDS)
  p.add_argument("--apply", action="store_true", help="replace the shipped file when better")
  p.add_argument("--note", default="", help="words for the ledger's row (the lease, the data)")
  p.add_argument("--ledger", default=LEDGER, help=f"the table a row is added to ({LEDGER})")
  args = p.parse_args(argv)
  return one_line_errors(run, args)


def run(args) -> int:
  from sparse_jax import api, files, metrics, pretrained
  for folder in args.real:
    if not os.path.isdir(folder):
      raise UserError(f"--real {folder}: no such folder; pass folders of recordings")
  candidate = api.load_codec(args.candidate)  # a damaged file: one line, before any work
  shipped = api.load_codec()
  if candidate.sample_rate != shipped.sample_rate:
    raise UserError(f"{args.candidate}: a model at {candidate.sample_rate} Hz cannot replace the "
                    f"shipped one at {shipped.sample_rate} Hz")
  clips = quality.choose_clips(args.real, args.clips, args.seconds)
  if not clips:
    raise UserError(f"no readable recordings under {', '.join(args.real)}")
  missing = metrics.visqol_missing()
  if missing:
    print(f"ViSQOL left out: {missing}", file=sys.stderr)
  figures = {name: score(codec, clips, not missing)
             for name, codec in (("candidate", candidate), ("shipped", shipped))}
  promote, why = verdict(figures["candidate"], figures["shipped"])
  for name, d in figures.items():
    print(f"{name}: " + ", ".join(f"{k} {'-' if v is None else f'{v:.4f}'}" for k, v in d.items()))
  if promote and args.apply:
    with files.atomic_output(pretrained.MODEL_PATH) as tmp:
      shutil.copyfile(args.candidate, tmp)
    why += f"; {pretrained.MODEL_PATH} replaced"
  elif promote:
    why += " (not applied: pass --apply)"
  row = _row(args.candidate, candidate.step, figures["candidate"], figures["shipped"], why,
             args.note)
  text = open(args.ledger).read() if os.path.exists(args.ledger) else LEDGER_HEAD
  files.write_text(args.ledger, text + row)
  print(why)
  return 0


if __name__ == "__main__":
  sys.exit(main())
