r"""Transposition in codec space: how many pitched events move, and do they sound moved?

  python -m benchmarks.transpose --workdir MODEL [--semitones 2,-3,12] [--clips 4] [--seconds 8]

Encodes the first `--seconds` of `--clips` clips of the embedded test split (plain encode), then
transposes every pitched event by each interval (`sparse_jax/codec/transpose.py`, what `edit
--transpose` runs) and reports, per interval:

  pitched       events whose model chose a pitch (summed over clips);
  moved         the share of them whose new vector chooses the new note (after the file's 8-bit
                snapping);
  heard_moved   of the moved events that pYIN hears pitched before and after, the share heard
                at the new note (within 50 cents of the old heard pitch + the interval);
  other_change  median over moved events of how far the decoder's other heads (timbre, decay,
                attack, room, fine offset) moved, in units of the event's distance to its
                nearest other event of the clip in those heads (0: only the pitch changed; 1: it
                now differs from itself as much as from its nearest neighbour).

Needs a model with a pitch control (a `harmonic` block).  Writes OUT/results.json.
"""
import argparse
import json
import os
import sys

import numpy as np

from benchmarks import one_line_errors
from sparse_jax.errors import UserError


def _other_heads(codec, vectors_ExD) -> np.ndarray:
  """(E, K) every head output of the decoder but the pitch head's, flattened."""
  import jax.numpy as jnp
  from flax import nnx
  decoder = nnx.merge(codec.graphs.g_graph, codec.g_params, codec.graphs.g_consts).decoder
  heads = decoder.heads(jnp.asarray(vectors_ExD, jnp.float32))
  e = len(vectors_ExD)
  return np.concatenate([np.asarray(heads[o][h]).reshape(e, -1) for o in heads
                         for h in heads[o] if h != "pitch"], axis=1)


def score(codec, events, semitones: int) -> dict:
  from sparse_jax import notes
  from sparse_jax.codec import transpose
  moved, report = transpose.transpose(codec, events, semitones)
  changed = np.flatnonzero(np.any(moved.vectors != events.vectors, axis=1))
  out = {"pitched": report["pitched"], "moved": report["moved"], "heard_pairs": 0,
         "heard_right": 0, "other_change": []}
  if changed.size == 0:
    return out
  render = lambda v: codec.render(v, np.zeros(len(v), np.int32), events.gains[changed],
                                  np.zeros(len(v), np.float32))
  before_hz, _ = notes.pitches_of(render(events.vectors[changed]), codec.sample_rate)
  after_hz, _ = notes.pitches_of(render(moved.vectors[changed]), codec.sample_rate)
  both = np.isfinite(before_hz) & np.isfinite(after_hz)
  cents = 1200 * np.log2(after_hz[both] / before_hz[both]) - 100 * semitones
  out["heard_pairs"], out["heard_right"] = int(both.sum()), int(np.sum(np.abs(cents) <= 50))
  old, new = _other_heads(codec, events.vectors), _other_heads(codec, moved.vectors)
  for i in changed:
    nearest = np.delete(np.linalg.norm(old - old[i], axis=1), i).min(initial=np.inf)
    out["other_change"].append(float(np.linalg.norm(new[i] - old[i]) / max(nearest, 1e-12)))
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", "--model", dest="workdir", required=True,
                 help="a model with a pitch control: training workdir or exported .npz")
  p.add_argument("--semitones", default="2,-3,12", help="intervals, a comma list")
  p.add_argument("--clips", type=int, default=4)
  p.add_argument("--seconds", type=float, default=8.0)
  p.add_argument("--out", default="benchmarks/results/transpose")
  args = p.parse_args(argv)
  return one_line_errors(run, args)


def run(args) -> int:
  from benchmarks.notes import clips_of
  from sparse_jax import api, audio_io
  from sparse_jax.data import classical
  try:
    intervals = [int(s) for s in args.semitones.split(",")]
  except ValueError:
    raise UserError(f"--semitones {args.semitones!r}: integers, e.g. 2,-3,12") from None
  codec = api.load_codec(args.workdir)
  if not codec.has_pitch_control:
    raise UserError(f"{args.workdir}: this model has no pitch control (no 'harmonic' block)")
  totals: dict[int, dict] = {n: {"pitched": 0, "moved": 0, "heard_pairs": 0, "heard_right": 0,
                "other_change": []} for n in intervals}
  for wav, _ in clips_of([str(classical.default_root() / "test")], args.clips):
    audio, sr = audio_io.read_audio(wav)
    audio = audio_io.downmix(audio)[:int(args.seconds * sr)]
    events = api.encode(codec, audio, sr)
    for n in intervals:
      for key, value in score(codec, events, n).items():
        totals[n][key] += value
  rows = {}
  for n, t in totals.items():
    rows[n] = {"pitched": t["pitched"], "moved": t["moved"] / max(t["pitched"], 1),
               "heard_moved": t["heard_right"] / max(t["heard_pairs"], 1),
               "heard_pairs": t["heard_pairs"],
               "other_change": float(np.median(t["other_change"])) if t["other_change"]
               else float("nan")}
    print(f"{n:+d} semitones: {rows[n]['moved']:.0%} of {t['pitched']} pitched events moved; "
          f"heard at the new note {rows[n]['heard_moved']:.0%} of {t['heard_pairs']}; other "
          f"heads moved {rows[n]['other_change']:.2f} x the nearest-event distance")
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump({"model": args.workdir, "clips": args.clips, "seconds": args.seconds,
               "intervals": {str(k): v for k, v in rows.items()}}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
