r"""Speed of the codec as a user runs it: `sparse-jax encode` and `decode` in fresh processes.

  python -m benchmarks.codec_speed --input SONG.ogg [--seconds 60,600] [--refine]
  python -m benchmarks.speed --codec --input SONG.ogg          # the same

The input (any recording; looped to length, mono at the model's rate) is cut to each length of
`--seconds`.  For each length, `sparse-jax encode` runs twice in new processes that share one
compilation cache (`SPARSE_JAX_CACHE`, a temporary folder, empty at the start): the very first
run compiles and fills it, every later one finds it (what a user's second invocation sees).  Then
`decode` of the file, and with `--refine` an `encode --refine 20`.  Each row: wall seconds,
seconds per second of audio, and peak resident memory of the process (`wait4`'s ru_maxrss).
"start" is a 1 s file encoded by a process that finds the cache warm: the fixed cost of an
invocation (import, model load, cached programs) before the audio's own work.  Beside them, in
this process: Opus 6 kbit/s (encode and decode through libsndfile) and matching pursuit at 3
kbit/s, on the first length.

Writes benchmarks/results/codec_speed.json and .md and prints the table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import machine
from sparse_jax.errors import UserError

OUT = os.path.join("benchmarks", "results", "codec_speed")


def timed_process(argv, env) -> dict:
  """Wall seconds and peak RSS (bytes) of one command in a fresh process."""
  # Its stderr goes to a file, not a pipe that nobody reads while it runs (a full pipe would
  # stop it).
  with tempfile.TemporaryFile() as stderr:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    if proc.returncode != 0:
      stderr.seek(0)
      said = stderr.read().decode(errors="replace").strip().splitlines()
      raise UserError(f"{' '.join(argv[2:])} failed: {said[-1] if said else 'no message'}")
  return {"wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024}


def audio_of(path: str, seconds: float, sample_rate: int) -> np.ndarray:
  from sparse_jax import audio_io
  audio = audio_io.load_audio(path, sample_rate)
  n = int(seconds * sample_rate)
  return np.resize(audio, n).astype(np.float32)  # looped to length


def measure(args) -> dict:
  from sparse_jax import api, audio_io
  from sparse_jax.baselines import classic_codecs, matching_pursuit
  codec = api.load_codec(args.workdir)
  sr = codec.sample_rate
  model = [] if args.workdir is None else ["--model", args.workdir]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, SPARSE_JAX_CACHE=os.path.join(tmp, "cache"))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cli = [sys.executable, "-m", "sparse_jax"]

    def run(label, seconds, argv):
      r = timed_process(cli + argv + ["--quiet", "-f"] + model, env)
      r.update(label=label, audio_s=seconds, s_per_s=r["wall_s"] / seconds)
      rows.append(r)
      print(f"{label}: {r['wall_s']:.1f} s ({r['s_per_s']:.3f} s/s), peak "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB", file=sys.stderr)

    for seconds in args.lengths:
      wav = os.path.join(tmp, f"in_{seconds:g}.wav")
      audio_io.write_audio(wav, audio_of(args.input, seconds, sr), sr)
      sjx = os.path.join(tmp, f"out_{seconds:g}.sjx")
      first = "first process, empty cache: compiles" if not rows else "cache warm"
      run(f"encode {seconds:g} s, {first}", seconds, ["encode", wav, sjx])
      run(f"encode {seconds:g} s, cache warm", seconds, ["encode", wav, sjx])
      run(f"decode {seconds:g} s", seconds,
          ["decode", sjx, os.path.join(tmp, "out.wav"), "--model-format"])
      if args.refine:
        run(f"encode --refine 20, {seconds:g} s", seconds, ["encode", wav, sjx, "--refine", "20"])
    one = os.path.join(tmp, "one.wav")
    audio_io.write_audio(one, audio_of(args.input, 1.0, sr), sr)
    run("start: encode 1 s, cache warm", 1.0, ["encode", one, os.path.join(tmp, "one.sjx")])
  seconds = args.lengths[0]
  clip = audio_of(args.input, seconds, sr)
  for label, fn in (("Opus 6k, encode + decode", lambda: classic_codecs.opus_roundtrip(
                        clip, sr, 6.0)),
                    ("matching pursuit, 3 kbit/s of atoms (encode)",
                     lambda: matching_pursuit.matching_pursuit(clip, int(3000 * seconds / 26)))):
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    rows.append({"label": f"{label}, {seconds:g} s", "audio_s": seconds, "wall_s": wall,
                 "s_per_s": wall / seconds, "peak_rss_bytes": None})
  return {"machine": machine.one_line(), "input": args.input, "model": args.workdir or "shipped",
          "command": "python -m benchmarks.codec_speed " + " ".join(args.argv), "rows": rows}


def markdown(report: dict) -> str:
  lines = [f"Machine: {report['machine']}; input `{report['input']}` (looped); model "
           f"{report['model']}.", f"Command: `{report['command']}`.", "",
           "| what | audio s | wall s | s per s of audio | peak RSS |", "|---|---|---|---|---|"]
  for r in report["rows"]:
    rss = "-" if r["peak_rss_bytes"] is None else f"{r['peak_rss_bytes'] / 2**30:.2f} GiB"
    lines.append(f"| {r['label']} | {r['audio_s']:g} | {r['wall_s']:.1f} | {r['s_per_s']:.3f} | "
                 f"{rss} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--input", required=True, help="a recording (looped to each length)")
  p.add_argument("--seconds", default="60,600", help="lengths in seconds, a comma list")
  p.add_argument("--workdir", "--model", dest="workdir", default=None)
  p.add_argument("--refine", action="store_true", help="also time encode --refine 20")
  p.add_argument("--out", default=OUT, help=f"output prefix (default {OUT})")
  args = p.parse_args(argv)
  args.argv = argv
  try:
    args.lengths = [float(x) for x in args.seconds.split(",") if x.strip()]
    if not args.lengths or min(args.lengths) <= 0:
      raise ValueError
  except ValueError:
    print(f"error: --seconds {args.seconds!r}: expected positive lengths like 60,600",
          file=sys.stderr)
    return 2
  try:
    from sparse_jax import files
    files.check_input_file(args.input, "an audio file")
    report = measure(args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  text = markdown(report)
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out + ".json", "w") as f:
    json.dump(report, f, indent=1)
  with open(args.out + ".md", "w") as f:
    f.write(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
