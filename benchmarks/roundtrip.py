"""Does decode give back what went in?  Rate, channels and level of a round trip, per file.

    python -m benchmarks.roundtrip SONG [SONG ...] [--model MODEL] [--out DIR]

Runs `sparse-jax encode SONG DIR/NAME.wav` (the one-step round trip, default decode) and the same
with `--model-format`, then prints, for the input and both outputs: sample rate, channels, RMS and
peak in dBFS.  The default decode should match the input's rate and channels, and its RMS within
1 dB (the level stored in the `.sjx` file); `--model-format` is the raw 22050 Hz mono rendering.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

from benchmarks import one_line_errors
from sparse_jax import files
from sparse_jax.audio_io import AUDIO_FILE
from sparse_jax.errors import UserError


def levels(path: str) -> dict:
  audio, rate = sf.read(path, always_2d=True, dtype="float64")
  rms = np.sqrt(np.mean(np.square(audio)))
  return {"rate": rate, "channels": audio.shape[1], "seconds": audio.shape[0] / rate,
          "rms_dbfs": 20 * np.log10(max(rms, 1e-12)),
          "peak_dbfs": 20 * np.log10(max(np.abs(audio).max(), 1e-12))}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("songs", nargs="+")
  parser.add_argument("--model", default=None, help="default: the shipped model")
  parser.add_argument("--out", default=None, help="folder for the outputs (default: temporary)")
  args = parser.parse_args(argv)
  return one_line_errors(_run, args)


def _encode(song: str, path: str, extra: list) -> None:
  """`sparse-jax encode SONG PATH EXTRA`: its own one-line error becomes ours."""
  done = subprocess.run([sys.executable, "-m", "sparse_jax", "encode", song, path, "--quiet",
                         "-f", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        text=True, check=False)
  if done.returncode:
    lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
    raise UserError(lines[-1].removeprefix("error: "))


def _run(args) -> int:
  for song in args.songs:  # every input before any work
    files.check_input_file(song, AUDIO_FILE)
  out = args.out or tempfile.mkdtemp(prefix="sparse_jax_roundtrip_")
  if os.path.exists(out) and not os.path.isdir(out):
    raise UserError(f"--out {out}: is a file; pass a folder")
  os.makedirs(out, exist_ok=True)
  model = ["--model", args.model] if args.model else []
  rows = []  # printed once every song went through: a failure leaves no half table
  for song in args.songs:
    name = os.path.splitext(os.path.basename(song))[0]
    outputs = {"default decode": os.path.join(out, f"{name}.wav"),
               "--model-format": os.path.join(out, f"{name}_model.wav")}
    for what, path in outputs.items():
      _encode(song, path, model + (["--model-format"] if what == "--model-format" else []))
    for what, path in [("input", song), *outputs.items()]:
      r = levels(path)
      rows.append(f"| {os.path.basename(song)} | {what} | {r['rate']} | {r['channels']} | "
                  f"{r['seconds']:.2f} | {r['rms_dbfs']:.2f} | {r['peak_dbfs']:.2f} |")
  print("| file | what | rate | channels | seconds | RMS dBFS | peak dBFS |")
  print("|---|---|---|---|---|---|---|")
  print("\n".join(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main())
