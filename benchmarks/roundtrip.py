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
  out = args.out or tempfile.mkdtemp(prefix="sparse_jax_roundtrip_")
  os.makedirs(out, exist_ok=True)
  model = ["--model", args.model] if args.model else []
  print("| file | what | rate | channels | seconds | RMS dBFS | peak dBFS |")
  print("|---|---|---|---|---|---|---|")
  for song in args.songs:
    name = os.path.splitext(os.path.basename(song))[0]
    outputs = {"default decode": os.path.join(out, f"{name}.wav"),
               "--model-format": os.path.join(out, f"{name}_model.wav")}
    for what, path in outputs.items():
      extra = ["--model-format"] if what == "--model-format" else []
      subprocess.run([sys.executable, "-m", "sparse_jax", "encode", song, path, "--quiet", "-f",
                      *model, *extra], check=True, stdout=subprocess.DEVNULL)
    for what, path in [("input", song), *outputs.items()]:
      r = levels(path)
      print(f"| {os.path.basename(song)} | {what} | {r['rate']} | {r['channels']} | "
            f"{r['seconds']:.2f} | {r['rms_dbfs']:.2f} | {r['peak_dbfs']:.2f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
