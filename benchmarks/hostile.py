"""Hostile event files against the command line: time, peak memory and output of each command.

    python -m benchmarks.hostile [--out DIR]

Writes the three files of the hardening issue into DIR (default: a temporary folder) and runs
`info`, `info --json` and `decode` on each in a fresh process with the shipped model, as a user
would.  Prints a table: exit status, wall seconds, the process's peak RSS, the bytes it wrote
(standard output plus files) and the first line it said on stderr.  The rule the format keeps:
memory, time and output in proportion to the events a file holds, never to a number its header
claims (`sparse_jax/codec/sjx.py`).

  far.sjx     82 bytes (84 in format version 2): the shipped model's rate, hop and window, one
              event at frame (2^32 - 1) // 256, 2^32 - 1 samples (54 hours).
  many.sjx    window 256, hop 128, one event at frame (2^32 - 1) // 128: 33.5 million windows.
  wide.sjx    ~1.6 kB of real events whose source format claims 1024 channels at 2^20 Hz.
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np


def leb128(values) -> bytes:
  """Unsigned LEB128 of each value, concatenated (written here, not taken from the writer)."""
  out = bytearray()
  for v in values:
    v = int(v)
    while True:
      out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
      v >>= 7
      if not v:
        break
  return bytes(out)


def hostile_sjx(path, *, frames, n_audio, rate=22050, hop=256, window=2**16, dim=16,
                source_word=0, version=2, model_id=bytes(range(16))) -> str:
  """A well-formed `.sjx` (valid CRC, sizes and ranges) with whatever header values are given.

  Every event: offset 0, gain 0.5, scale 0.01, vector all ones; the level (version 2) is 1.
  """
  n = len(frames)
  column = leb128(np.diff(np.asarray(frames, np.int64), prepend=0))
  header = struct.pack("<4sHIHIQHHIB16sI", b"SJX\x00", version, rate, hop, window,
                       n_audio | (source_word << 32), dim, 32, n, 8, model_id, len(column))
  if version == 2:
    header += struct.pack("<e", 1.0)
  body = (column + bytes(n) + np.full(n, 0.5, "<f2").tobytes() +
          np.full(n, 0.01, "<f2").tobytes() + np.ones(n * dim, np.int8).tobytes())
  data = header + body
  with open(path, "wb") as f:
    f.write(data + struct.pack("<I", zlib.crc32(data)))
  return str(path)


def write_files(folder: str) -> dict:
  """The three hostile files of the module docstring; {name: path}."""
  from sparse_jax import api
  from sparse_jax.codec import events as events_lib
  from sparse_jax.codec import sjx
  codec = api.load_codec()
  paths = {
      "far": hostile_sjx(os.path.join(folder, "far.sjx"), frames=[(2**32 - 1) // 256],
                         n_audio=2**32 - 1, model_id=codec.model_id),
      "many": hostile_sjx(os.path.join(folder, "many.sjx"), frames=[(2**32 - 1) // 128],
                          n_audio=2**32 - 1, hop=128, window=256, model_id=codec.model_id),
  }
  rng = np.random.default_rng(0)
  n, n_audio = 68, 4 * 22050
  events = events_lib.EventSet(
      frames=np.sort(rng.integers(0, n_audio // codec.hop, n)), offsets=np.zeros(n),
      gains=np.full(n, 0.05), vectors=rng.normal(size=(n, codec.event_dim)),
      sample_rate=codec.sample_rate, hop=codec.hop, window_samples=codec.n_samples,
      n_audio_samples=n_audio, model_id=codec.model_id, source_sample_rate=2**20,
      source_channels=1024, level=1.0)
  paths["wide"] = os.path.join(folder, "wide.sjx")
  sjx.write(paths["wide"], events)
  return paths


def measure(argv, folder: str) -> dict:
  """Runs `python -m sparse_jax ARGV` in a fresh process: status, seconds, peak RSS, bytes out."""
  before = {f: os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)}
  start = time.perf_counter()
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    proc = subprocess.Popen([sys.executable, "-m", "sparse_jax", *argv], stdout=out, stderr=err,
                            cwd=folder)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stdout_bytes = out.seek(0, os.SEEK_END)
    err.seek(0)
    said = (err.read().decode(errors="replace").strip().splitlines() or [""])[0]
  after = {f: os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)}
  written = sum(size for f, size in after.items() if before.get(f) != size)
  return {"command": " ".join(["sparse-jax", *argv]), "status": os.waitstatus_to_exitcode(status),
          "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
          "output_mb": (stdout_bytes + written) / 2**20, "said": said[:110]}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=None, help="folder for the files (default: temporary)")
  parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  folder = args.out or tempfile.mkdtemp(prefix="sparse_jax_hostile_")
  if os.path.exists(folder) and not os.path.isdir(folder):
    print(f"error: --out {folder}: is a file; pass a folder", file=sys.stderr)
    return 2
  os.makedirs(folder, exist_ok=True)
  if args.write_only:
    write_files(folder)
    return 0
  # The files are written by a child: this process stays small (no JAX, no model), so the peak RSS
  # each measured child reports is its own, not the pages it shared with its parent before exec.
  subprocess.run([sys.executable, "-m", "benchmarks.hostile", "--write-only", "--out", folder],
                 check=True)
  paths = {name: os.path.join(folder, f"{name}.sjx") for name in ("far", "many", "wide")}
  rows = []
  for name, path in paths.items():
    base = os.path.basename(path)
    rows.append(measure(["info", base], folder))
    rows.append(measure(["info", base, "--json"], folder))
    rows.append(measure(["decode", base, f"{name}.wav", "--quiet", "-f"], folder))
  print("| command | status | seconds | peak RSS MB | output MB | first line on stderr |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| `{r['command']}` | {r['status']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
          f"{r['output_mb']:.3f} | {r['said']} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
