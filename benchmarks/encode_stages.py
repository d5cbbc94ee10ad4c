r"""Where a plain encode's time goes, stage by stage (issue 24's "measure first").

  python -m benchmarks.encode_stages --input SONG.ogg [--seconds 30] [--workdir MODEL]

Encodes the first `--seconds` of the input (mono, at the model's rate) with the model (default:
the shipped one) after one untimed window has compiled every program, and times each stage of
`codec/encode.py` in wall seconds, by wrapping the functions that do it:

  run_window      the removal loop on one window (jitted: encoder + decoder, 32 steps)
  render          the window's kept events rendered again at unit gain, snapped to the file
  event_stfts     one |STFT| per rendered event (numpy) and the input's own frames
  fit_gains / prune / SafeScale (init, best_alpha, errors_with): the gain refit and the check

Then a decode of the events.  Prints a table and writes OUT/encode_stages.json and .md.
"""
import argparse
import collections
import json
import os
import time

from benchmarks import machine, one_line_errors

OUT = os.path.join("benchmarks", "results", "encode_stages")


def _timed(table, obj, name: str, label: str):
  """Replaces obj.name with a wrapper that adds its wall time and call count to `table`;
  returns the function that puts the original back."""
  inner = getattr(obj, name)
  own = name in vars(obj)  # an instance's own attribute, or one it reads from its class

  def wrapper(*args, **kwargs):
    start = time.perf_counter()
    try:
      return inner(*args, **kwargs)
    finally:
      table[label][0] += time.perf_counter() - start
      table[label][1] += 1

  setattr(obj, name, wrapper)
  return (lambda: setattr(obj, name, inner)) if own else (lambda: delattr(obj, name))


def measure(codec, audio_T) -> dict:
  from sparse_jax import api
  from sparse_jax.codec import encode as encode_lib
  from sparse_jax.codec import gains
  api.encode(codec, audio_T[:codec.n_samples])  # compiles every program of a window, untimed
  table: dict = collections.defaultdict(lambda: [0.0, 0])
  restore = [_timed(table, obj, name, label) for obj, name, label in (
      (codec, "run_window", "run_window"), (codec, "render", "render"),
      (encode_lib.metrics, "stft_magnitude", "event_stfts"),
      (gains, "fit_gains", "fit_gains"), (gains, "prune", "prune"),
      (gains.SafeScale, "__init__", "SafeScale.init"),
      (gains.SafeScale, "best_alpha", "SafeScale.best_alpha"),
      (gains.SafeScale, "errors_with", "SafeScale.errors_with"))]
  seconds = audio_T.size / codec.sample_rate
  try:
    start = time.perf_counter()
    events = api.encode(codec, audio_T)
    total = time.perf_counter() - start
  finally:
    for undo in restore:
      undo()
  table = {label: tuple(row) for label, row in table.items()}
  start = time.perf_counter()
  codec.decode(events)
  decode = time.perf_counter() - start
  stages = {label: {"seconds": s, "calls": n, "share": s / total}
            for label, (s, n) in sorted(table.items(), key=lambda kv: -kv[1][0])}
  stages["other (host glue)"] = {"seconds": total - sum(s for s, _ in table.values()),
                                 "calls": 0,
                                 "share": 1 - sum(s for s, _ in table.values()) / total}
  return {"audio_seconds": seconds, "events": len(events), "encode_seconds": total,
          "encode_s_per_s": total / seconds, "decode_seconds": decode,
          "decode_s_per_s": decode / seconds, "stages": stages}


def table(result: dict) -> str:
  lines = [f"{result['audio_seconds']:.0f} s of audio, {result['events']} events: encode "
           f"{result['encode_seconds']:.1f} s ({result['encode_s_per_s']:.3f} s/s), decode "
           f"{result['decode_seconds']:.1f} s ({result['decode_s_per_s']:.3f} s/s)", "",
           "| stage | seconds | calls | share of encode |", "|---|---|---|---|"]
  for label, row in result["stages"].items():
    lines.append(f"| {label} | {row['seconds']:.2f} | {row['calls']} | {100 * row['share']:.1f} % |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--input", required=True, help="any recording (mono at the model's rate is used)")
  p.add_argument("--seconds", type=float, default=30.0, help="seconds of it encoded")
  p.add_argument("--workdir", "--model", dest="workdir", default=None,
                 help="training workdir or exported .npz (default: the shipped model)")
  p.add_argument("--out", default=OUT)
  return one_line_errors(run, p.parse_args(argv))


def run(args) -> int:
  from sparse_jax import api, audio_io
  from sparse_jax.errors import UserError
  if not args.seconds > 0:
    raise UserError(f"--seconds must be positive, got {args.seconds}")
  codec = api.load_codec(args.workdir)
  audio, rate = audio_io.read_audio(args.input)
  audio_T = audio_io.resample(audio_io.downmix(audio), rate, codec.sample_rate)
  audio_T = audio_T[:int(args.seconds * codec.sample_rate)]
  result = measure(codec, audio_T)
  result.update(input=args.input, model=args.workdir or "shipped", machine=machine.one_line(),
                command="python -m benchmarks.encode_stages --input " + args.input
                + f" --seconds {args.seconds:g}")
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "encode_stages.json"), "w") as f:
    json.dump(result, f, indent=1)
  text = table(result)
  with open(os.path.join(args.out, "encode_stages.md"), "w") as f:
    f.write(f"Command: `{result['command']}`; {result['machine']}.\n\n{text}\n")
  print(text)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
