r"""The collapse ablation table: one row per trained and evaluated workdir.

  python train.py --config configs/quickstart.py --workdir runs/abl_NAME [--config.X=Y ...]
  python eval.py --workdir runs/abl_NAME --nocompare_untrained
  python -m benchmarks.ablation runs/abl_* --out benchmarks/results/ablation
  python eval.py --workdir runs/abl_NAME --nocompare_untrained --clips 128 --out runs/abl_NAME/eval128
  python -m benchmarks.ablation runs/abl_NAME ... --eval_dir eval128   # the same on 128 clips

A GPU screen's models (scripts/sweep_in_lease.sh: exported generators, trained on the device) are
rows too: evaluate each here with `python eval.py --workdir out/models/NAME.npz
--nocompare_untrained --out EVAL/NAME` and pass the EVAL/NAME folders; their minutes are n/a
(GPU time shared by the screen's concurrent runs).

Each row gives the overrides that tell the run's config from `configs/quickstart.py` (so the
command that trains it), the steps, the training minutes (from the workdir's config.json, written
when training starts, to its last checkpoint, so compile time included), and the held-out figures
of `eval.py`: effective rank, mean |cos|, share of events in a window's first 4 frames, spectral
centroid spread, the share of events stacked on an earlier event's frame, the events' median
duration (10% to 90% of their energy), energy removed (sum of event spectrograms and mixed
audio), the over-subtracted share, MR-STFT and log-mel.
Writes OUT.md and OUT.json.
"""
import argparse
import json
import os
import sys

from configs import musicnet, quickstart
from sparse_jax.errors import UserError


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = tuple(value) if isinstance(value, list) else value
  return out


def overrides(run_config: dict) -> list[str]:
  """The `--config.X=Y` flags that turn configs/quickstart.py into this run's config.

  A field missing from an older run's config.json did not exist yet, so that run had the paper's
  behaviour, which is what configs/musicnet.py:paper sets it to.
  """
  base = _flatten(json.loads(quickstart.get_config().to_json()))
  paper = _flatten(json.loads(musicnet.get_config("paper").to_json()))
  run = _flatten(run_config)
  for k in base:
    run.setdefault(k, paper.get(k, base[k]))
  return [f"--config.{k}={run[k]}" for k in sorted(run) if k not in base or run[k] != base[k]]


def row(workdir: str, eval_dir: str = "eval") -> dict:
  """A training workdir, evaluated into its `eval_dir`; or the eval folder of an exported
  generator (a screen's)."""
  screened = not os.path.exists(os.path.join(workdir, "config.json"))
  metrics = os.path.join(workdir, "metrics.json" if screened else f"{eval_dir}/metrics.json")
  with open(metrics) as f:
    report = json.load(f)
  if screened:
    from sparse_jax import generator
    config = json.loads(generator.load(report["workdir"])[0].to_json())
  else:
    with open(os.path.join(workdir, "config.json")) as f:
      config = json.load(f)
  label = next(k for k in report["results"] if k.startswith("trained"))
  res = report["results"][label]
  rep = res["representation"]
  minutes = None
  if not screened:
    last = os.path.join(workdir, "checkpoints", str(report["step"]))
    minutes = (os.path.getmtime(last) - os.path.getmtime(os.path.join(workdir, "config.json"))) / 60
  return {
      "variant": os.path.basename(os.path.normpath(workdir)),
      "overrides": overrides(config), "steps": report["step"],
      "minutes": None if minutes is None else round(minutes, 1),
      "effective_rank": rep.get("effective_rank"), "mean_abs_cosine": rep.get("mean_abs_cosine"),
      "first_frames_share": rep.get("first_frames_share"),
      # Evaluations made before eval.py recorded it have no stacked share.
      "stacked_share": rep.get("stacked_share"),
      "centroid_spread_octaves": rep.get("centroid_spread_octaves"),
      "duration_ms": rep.get("duration_ms"),
      "silent_events": rep.get("silent_events"), "events": rep.get("events"),
      "removed_sum": res["sum_of_event_spectrograms"][-1],
      "removed_mixed": res["spectrogram_of_summed_audio"][-1],
      # Evaluations made before eval.py recorded it have no over-subtraction curve.
      "over_subtracted": res.get("over_subtracted", [None])[-1],
      "mr_stft": res["mr_stft"], "log_mel": res["log_mel"], "clips": report["n_clips"],
  }


def markdown(rows: list[dict]) -> str:
  head = ("| variant | overrides of configs/quickstart.py | steps | min | rank | mean abs cos | "
          "first 4 frames | stacked | centroid spread (oct) | duration (ms) | silent | "
          "removed (sum) | removed (mixed) | over-subtracted | MR-STFT | log-mel |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  fmt = lambda v, p=3: "n/a" if v is None else f"{v:.{p}f}"
  pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
  for r in rows:
    lines.append(
        f"| {r['variant']} | {' '.join(f'`{o}`' for o in r['overrides']) or '(none)'} | "
        f"{r['steps']} | {fmt(r['minutes'], 0)} | {fmt(r['effective_rank'], 2)} | "
        f"{fmt(r['mean_abs_cosine'])} | {fmt(100 * r['first_frames_share'], 1)}% | "
        f"{pct(r.get('stacked_share'))} | "
        f"{fmt(r['centroid_spread_octaves'], 2)} | {fmt(r.get('duration_ms'), 0)} | "
        f"{r['silent_events']}/"
        f"{r['events'] + r['silent_events']} | {fmt(r['removed_sum'])} | "
        f"{fmt(r['removed_mixed'])} | {fmt(r.get('over_subtracted'))} | {fmt(r['mr_stft'])} | "
        f"{fmt(r['log_mel'])} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdirs", nargs="+")
  parser.add_argument("--out", default=None, help="write OUT.md and OUT.json")
  parser.add_argument("--eval_dir", default="eval",
                      help="each workdir's evaluation folder (e.g. one written by `eval.py "
                           "--clips 128 --out WORKDIR/eval128`)")
  args = parser.parse_args(argv)
  rows = []
  for wd in args.workdirs:
    try:
      rows.append(row(wd, args.eval_dir))
    except (OSError, KeyError, ValueError, StopIteration, UserError) as e:
      print(f"skipping {wd}: not trained and evaluated ({type(e).__name__}: {e})",
            file=sys.stderr)
  table = markdown(rows)
  print(table)
  if args.out:
    with open(args.out + ".md", "w") as f:
      f.write(table)
    with open(args.out + ".json", "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
