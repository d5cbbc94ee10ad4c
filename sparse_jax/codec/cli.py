"""The codec as a command-line tool: encode, decode, edit, info, report.

Wired into `python -m sparse_jax` through `register(subparsers)`; `main(argv)` runs the same
commands on their own (tests, scripts).  Usage:

  encode IN.(wav|flac|ogg|mp3) OUT.sjx --workdir DIR [--events N] [--residual-threshold X]
         [--bits 8|16] [--force]
  decode IN.sjx OUT.wav --workdir DIR [--ignore-model-id] [--float] [--force]
  edit IN.sjx OUT.sjx [--random-vectors] [--random-times] [--perturb SCALE] [--drop I,J,...]
       [--drop-range T0:T1] [--shift SECONDS] [--scale-gains F] [--seed S]
       [--export-json F.json] [--import-json F.json] [--bits 8|16] [--force]
  info IN.sjx [--json]
  report IN.wav --workdir DIR --out REPORT_DIR [--seed S] [--max-seconds X] [--force]

Bad input (unreadable audio, a corrupt / truncated / foreign `.sjx`, a missing checkpoint, a bad
option value) prints one line `error: ...` on stderr and exits with status 2.  Outputs are written
through temporary files and renamed into place, so a failed command never leaves a partial file.
An existing output (a report: a non-empty folder) is replaced only with `--force` (`-f`); every
output path is checked before the model is loaded, so a bad one fails at once, not after an encode.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

from sparse_jax.errors import UserError

AUDIO_OUT_EXTENSIONS = (".wav", ".flac", ".ogg")

# Codecs loaded in this process, keyed by the workdir's files: in-process callers (tests, a
# notebook) running several commands on one workdir restore and compile once.
_CODECS = {}


def _workdir_key(workdir):
  path = os.path.realpath(workdir)
  parts = [path]
  for name in ("config.json", "checkpoints"):
    try:
      st = os.stat(os.path.join(path, name))
      parts.append((name, st.st_mtime_ns, st.st_size))
    except OSError:
      return None
  try:
    ckpts = os.path.join(path, "checkpoints")
    parts.append(tuple(sorted((d, os.stat(os.path.join(ckpts, d)).st_mtime_ns)
                              for d in os.listdir(ckpts))))
  except OSError:
    return None
  return tuple(parts)


def load_codec(workdir):
  """`Codec.from_workdir`, cached per process while the workdir's files are unchanged."""
  from sparse_jax.codec import stream  # pylint: disable=g-import-not-at-top
  key = _workdir_key(workdir)
  if key is not None and key in _CODECS:
    return _CODECS[key]
  codec = stream.Codec.from_workdir(workdir)
  if key is not None:
    _CODECS[key] = codec
  return codec


def _check_output_folder(path):
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"{path}: cannot write: folder {folder} does not exist; create it first")
  # Root passes os.access whatever the mode; everyone else learns it now, not after an encode.
  if not os.access(folder, os.W_OK | os.X_OK):
    raise UserError(f"{path}: cannot write: folder {folder} is not writable; choose another "
                    "output path")


def _check_output(path, force):
  """One line, before any real work, unless `path` can and may be written as a file."""
  path = os.fspath(path)
  _check_output_folder(path)
  if os.path.isdir(path):
    raise UserError(f"{path}: is a folder; pass a file path")
  if os.path.lexists(path) and not force:
    raise UserError(f"{path}: already exists; pass --force (-f) to overwrite it")


def _check_audio_output(path, force):
  ext = os.path.splitext(path)[1].lower()
  if ext not in AUDIO_OUT_EXTENSIONS:
    raise UserError(f"{path}: cannot write {ext or 'extension-less'} audio; use "
                    f"{', '.join(AUDIO_OUT_EXTENSIONS)}")
  _check_output(path, force)


def _check_seed(seed):
  # numpy's generators take only non-negative seeds (a negative one is a ValueError traceback).
  if seed < 0:
    raise UserError(f"--seed {seed}: must be >= 0; pass e.g. --seed 0")


def _check_distinct(src, dst):
  if os.path.abspath(src) == os.path.abspath(dst):
    raise UserError(f"{dst}: the output would overwrite the input; choose another output path")


def _file_bits(path):
  """Bits per vector value of a `.sjx` file that `sjx.read` already accepted (header offset 32)."""
  with open(path, "rb") as f:
    f.seek(32)
    return f.read(1)[0]


def _write_text_atomic(path, text):
  _check_output_folder(path)
  tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                     f".{os.path.basename(path)}.{os.getpid()}.tmp")
  try:
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except OSError as e:
    raise UserError(f"{path}: cannot write: {e.strerror or e}; check the path") from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def windows_of(events):
  """Events per streaming window of an EventSet: int64 (W,)."""
  half = max(events.window_samples // events.hop // 2, 1)
  n_in = max(1, -(-events.n_audio_samples // events.hop))
  n_windows = max(1, -(-n_in // half))
  counts = np.bincount(np.asarray(events.frames, np.int64) // half, minlength=n_windows)
  return counts[:max(n_windows, len(counts))]


# ------------------------------------------------------------------------------------------------
# Commands.


def cmd_encode(args):
  from sparse_jax import audio_io  # pylint: disable=g-import-not-at-top
  from sparse_jax.codec import sjx  # pylint: disable=g-import-not-at-top
  _check_output(args.output, args.force)
  _check_distinct(args.input, args.output)
  if not os.path.exists(args.input):
    raise UserError(f"{args.input}: no such audio file; check the path")
  codec = load_codec(args.workdir)
  audio = audio_io.load_audio(args.input, codec.sample_rate)
  if audio.size > sjx.MAX_AUDIO_SAMPLES:
    raise UserError(f"{args.input}: {audio.size} samples at {codec.sample_rate} Hz is more than a "
                    f".sjx file holds ({sjx.MAX_AUDIO_SAMPLES}); split the recording")
  start = time.time()
  events, info = codec.encode(audio, n_events=args.events,
                              residual_threshold=args.residual_threshold, bits=args.bits,
                              progress=not args.quiet, return_info=True)
  seconds = time.time() - start
  sjx.write(args.output, events, bits=args.bits)
  duration = events.duration_seconds
  kbps = sjx.bitrate_kbps(os.path.getsize(args.output), duration_seconds=duration)
  print(f"{args.output}: {len(events)} events, {duration:.2f} s, {kbps:.2f} kbit/s "
        f"({args.bits}-bit), real-time factor {seconds / duration:.3f} "
        f"(encode {seconds:.2f} s incl. compilation / audio {duration:.2f} s)")
  # The energy report (not stored in the file): first-half residual share left per window.
  left = info.shares_WxS1[np.arange(len(info.kept_W)), info.kept_W]
  print(f"residual energy left per window (first-half L1 share): mean {left.mean():.3f}, "
        f"min {left.min():.3f}, max {left.max():.3f} over {len(left)} windows")


def cmd_decode(args):
  from sparse_jax import audio_io  # pylint: disable=g-import-not-at-top
  from sparse_jax.codec import sjx  # pylint: disable=g-import-not-at-top
  _check_audio_output(args.output, args.force)
  _check_distinct(args.input, args.output)
  if args.float and os.path.splitext(args.output)[1].lower() != ".wav":
    raise UserError("--float writes 32-bit float samples, which only .wav holds; use OUT.wav")
  events = sjx.read(args.input)  # Checks the file before the model is loaded.
  codec = load_codec(args.workdir)
  codec.check_compatible(events, ignore_model_id=args.ignore_model_id)
  start = time.time()
  audio = codec.decode(events, ignore_model_id=args.ignore_model_id, progress=not args.quiet)
  seconds = time.time() - start
  peak = float(np.abs(audio).max()) if audio.size else 0.0
  audio_io.write_audio(args.output, audio, codec.sample_rate,
                       subtype="FLOAT" if args.float else None)
  note = ""
  if peak > 1 and not args.float:
    note = f"; peak {peak:.2f} > 1 was clipped (use --float with a .wav to keep it)"
  print(f"{args.output}: {events.duration_seconds:.2f} s from {len(events)} events, decoded in "
        f"{seconds:.2f} s{note}")


def _parse_drop(text):
  try:
    return [int(x) for x in text.split(",") if x.strip()]
  except ValueError:
    raise UserError(f"--drop {text!r}: expected event indices like 0,5,12 (see --export-json "
                    "for the index column)") from None


def _parse_range(text):
  try:
    t0, t1 = (float(x) for x in text.split(":"))
  except ValueError:
    raise UserError(f"--drop-range {text!r}: expected START:END in seconds, e.g. 1.5:3") from None
  if not t0 < t1:
    raise UserError(f"--drop-range {text!r}: START must be before END")
  return t0, t1


def _check_edit_values(args):
  """One line per bad edit value, naming the option, before the input is read."""
  examples = {"shift": "0.25", "perturb": "0.5", "scale_gains": "0.5"}
  for name, example in examples.items():
    value = getattr(args, name)
    option = "--" + name.replace("_", "-")
    if value is not None and not math.isfinite(value):
      raise UserError(f"{option} {value:g}: not a finite number; pass e.g. {option} {example}")
    if name != "shift" and value is not None and value < 0:
      raise UserError(f"{option} {value:g}: must be >= 0; pass e.g. {option} {example}")
  _check_seed(args.seed)


def _edit_step(option, fn, *fn_args):
  """Runs one edit; its ValueError becomes one line naming the option."""
  try:
    return fn(*fn_args)
  except ValueError as e:
    raise UserError(f"{option}: {e}; pass a smaller value") from None


def cmd_edit(args):
  from sparse_jax.codec import edit, sjx  # pylint: disable=g-import-not-at-top
  _check_output(args.output, args.force)
  if args.export_json:
    _check_output(args.export_json, args.force)
  _check_distinct(args.input, args.output)
  _check_edit_values(args)
  events = sjx.read(args.input)
  bits = args.bits or _file_bits(args.input)
  if args.import_json:
    try:
      with open(args.import_json) as f:
        text = f.read()
    except OSError as e:
      raise UserError(f"{args.import_json}: cannot read: {e.strerror or e}; check the path"
                      ) from None
    table = edit.from_json(text, source=args.import_json)
    same = ("sample_rate", "hop", "window_samples", "n_audio_samples", "model_id")
    if any(getattr(table, k) != getattr(events, k) for k in same):
      raise UserError(f"{args.import_json}: its metadata (model, rate, hop, window, length) does "
                      f"not match {args.input}; export the table from that file")
    events = table
  duration = events.duration_seconds
  if args.shift is not None and abs(args.shift) > duration:
    raise UserError(f"--shift {args.shift:g}: longer than the file ({duration:.2f} s), every "
                    f"event would leave it; pass a shift between -{duration:.2f} and "
                    f"{duration:.2f}")
  rng = np.random.default_rng(args.seed)
  done = []
  try:
    if args.drop is not None or args.drop_range is not None:
      indices = _parse_drop(args.drop) if args.drop is not None else None
      time_range = _parse_range(args.drop_range) if args.drop_range is not None else None
      before = len(events)
      events = edit.drop(events, indices=indices, time_range=time_range)
      done.append(f"dropped {before - len(events)}")
    if args.shift is not None:
      before = len(events)
      events = edit.shift_times(events, args.shift)
      done.append(f"shifted by {args.shift} s ({before - len(events)} fell outside)")
    if args.scale_gains is not None:
      events = _edit_step(f"--scale-gains {args.scale_gains:g}", edit.scale_gains, events,
                          args.scale_gains)
      done.append(f"gains x{args.scale_gains}")
    if args.random_vectors:
      events = edit.random_vectors(events, rng)
      done.append("random vectors")
    if args.random_times:
      events = edit.random_times(events, rng)
      done.append("random times")
    if args.perturb is not None:
      events = _edit_step(f"--perturb {args.perturb:g}", edit.perturb, events, args.perturb, rng)
      done.append(f"perturbed by {args.perturb}")
  except ValueError as e:
    raise UserError(f"edit {args.input}: {e}") from None
  if args.export_json:
    _write_text_atomic(args.export_json, edit.to_json(events))
  sjx.write(args.output, events, bits=bits)
  print(f"{args.output}: {len(events)} events ({', '.join(done) or 'no edits'})")


def info_dict(path):
  """The summary that `info` prints, as a dict."""
  from sparse_jax.codec import sjx  # pylint: disable=g-import-not-at-top
  events = sjx.read(path)
  counts = windows_of(events)
  size = os.path.getsize(path)
  duration = events.duration_seconds
  return {
      "file": path,
      "events": len(events),
      "duration_s": round(duration, 4),
      "bitrate_kbps": (round(sjx.bitrate_kbps(size, duration_seconds=duration), 3)
                       if duration > 0 else None),
      "bytes": size,
      "bits": _file_bits(path),
      "model_id": events.model_id.hex(),
      "sample_rate": events.sample_rate,
      "hop": events.hop,
      "window_samples": events.window_samples,
      "event_dim": events.event_dim,
      "events_per_window_setting": events.events_per_window,
      "windows": int(len(counts)),
      "events_per_window": [int(c) for c in counts],
  }


def cmd_info(args):
  if args.config:  # the model's parameter counts (python -m sparse_jax info --config ...)
    from sparse_jax import info as model_info  # pylint: disable=g-import-not-at-top
    print(json.dumps(model_info.parameter_counts_of_file(args.config), indent=2))
    return
  if not args.input:
    raise UserError("info needs a .sjx file (info IN.sjx) or a config (info --config FILE.py)")
  info = info_dict(args.input)
  if args.json:
    print(json.dumps(info, indent=2))
    return
  width = max(len(k) for k in info)
  for key, value in info.items():
    if key == "events_per_window":
      value = " ".join(str(v) for v in value)
    print(f"{key.ljust(width)}  {value}")


def cmd_report(args):
  from sparse_jax import audio_io  # pylint: disable=g-import-not-at-top
  from sparse_jax.codec import report  # pylint: disable=g-import-not-at-top
  out = args.out
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent):
    raise UserError(f"--out {out}: its parent folder {parent} does not exist; create it")
  _check_output_folder(out)  # the parent must take the new folder
  if os.path.exists(out) and not os.path.isdir(out):
    raise UserError(f"--out {out} is a file; pass a folder path")
  if os.path.isdir(out) and os.listdir(out) and not args.force:
    raise UserError(f"{out}: already exists and is not empty; pass --force (-f) to replace it")
  _check_seed(args.seed)
  if args.max_seconds is not None and not (math.isfinite(args.max_seconds)
                                           and args.max_seconds > 0):
    raise UserError(f"--max-seconds {args.max_seconds}: must be positive; pass e.g. "
                    "--max-seconds 10")
  if not os.path.exists(args.input):
    raise UserError(f"{args.input}: no such audio file; check the path")
  codec = load_codec(args.workdir)
  audio = audio_io.load_audio(args.input, codec.sample_rate)
  max_samples = None if args.max_seconds is None else int(args.max_seconds * codec.sample_rate)
  if max_samples is not None and max_samples < 1:
    raise UserError(f"--max-seconds {args.max_seconds}: must be positive; pass e.g. "
                    "--max-seconds 10")
  index = report.write_report(audio, codec, args.out, seed=args.seed, max_samples=max_samples,
                              source_name=os.path.basename(args.input))
  print(f"report written: {index}")


# ------------------------------------------------------------------------------------------------
# Parser.


def _add_force(p):
  p.add_argument("-f", "--force", action="store_true",
                 help="overwrite an existing output (default: refuse)")


def _bits(text):
  if text not in ("8", "16"):
    raise argparse.ArgumentTypeError("bits must be 8 or 16")
  return int(text)


def register(subparsers, info_name: str = "info"):
  """Adds encode, decode, edit, info (under `info_name`) and report to an argparse subparsers."""
  p = subparsers.add_parser("encode", help="audio file -> .sjx events (any length and rate)")
  p.add_argument("input", help="audio file (wav, flac, ogg, mp3; any rate and channel count)")
  p.add_argument("output", help="the .sjx file to write")
  p.add_argument("--workdir", required=True, help="training workdir of the model")
  p.add_argument("--events", type=int, default=None,
                 help="events per window (default: the model's n_events); with "
                      "--residual-threshold, the most events per window")
  p.add_argument("--residual-threshold", type=float, default=None,
                 help="keep events until the window's first-half residual energy share falls "
                      "below this value (0..1)")
  p.add_argument("--bits", type=_bits, default=8, help="bits per vector value: 8 or 16")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  _add_force(p)
  p.set_defaults(fn=cmd_encode)

  p = subparsers.add_parser("decode", help=".sjx events -> audio file")
  p.add_argument("input", help="the .sjx file")
  p.add_argument("output", help="audio file to write (.wav, .flac, .ogg)")
  p.add_argument("--workdir", required=True, help="training workdir of the model that encoded it")
  p.add_argument("--ignore-model-id", action="store_true",
                 help="decode even if another checkpoint encoded the file")
  p.add_argument("--float", action="store_true", help="32-bit float .wav (no clipping)")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  _add_force(p)
  p.set_defaults(fn=cmd_decode)

  p = subparsers.add_parser("edit", help="edit the events of a .sjx file")
  p.add_argument("input", help="the .sjx file")
  p.add_argument("output", help="the edited .sjx file to write")
  p.add_argument("--random-vectors", action="store_true",
                 help="replace every vector with a random one (U(min, max) of the file)")
  p.add_argument("--random-times", action="store_true", help="move every event to a random time")
  p.add_argument("--perturb", type=float, default=None, metavar="SCALE",
                 help="move every vector by one shared random vector of this length")
  p.add_argument("--drop", default=None, metavar="I,J,...",
                 help="remove events by index (the index column of --export-json)")
  p.add_argument("--drop-range", default=None, metavar="T0:T1",
                 help="remove events starting in [T0, T1) seconds")
  p.add_argument("--shift", type=float, default=None, metavar="SECONDS",
                 help="move every event in time (events moved outside the file are dropped)")
  p.add_argument("--scale-gains", type=float, default=None, metavar="F",
                 help="multiply every gain by F")
  p.add_argument("--seed", type=int, default=0, help="seed of the random edits")
  p.add_argument("--export-json", default=None, metavar="F.json",
                 help="also write the edited events as an editable JSON table")
  p.add_argument("--import-json", default=None, metavar="F.json",
                 help="take the events from this (hand-edited) table instead of the input's")
  p.add_argument("--bits", type=_bits, default=None,
                 help="bits per vector value of the output (default: the input's)")
  _add_force(p)
  p.set_defaults(fn=cmd_edit)

  p = subparsers.add_parser(info_name, help="summary of a .sjx file, or a config's parameters")
  p.add_argument("input", nargs="?", default=None, help="the .sjx file")
  p.add_argument("--config", default=None,
                 help="print the parameter counts of configs/FILE.py[:preset] instead (JSON)")
  p.add_argument("--json", action="store_true", help="print JSON instead of aligned text")
  p.set_defaults(fn=cmd_info)

  p = subparsers.add_parser("report", help="HTML report: players, timeline, per-step figures")
  p.add_argument("input", help="audio file")
  p.add_argument("--workdir", required=True, help="training workdir of the model")
  p.add_argument("--out", required=True, help="folder to write index.html and its files into")
  p.add_argument("--seed", type=int, default=0, help="seed of the edit experiments")
  p.add_argument("--max-seconds", type=float, default=None,
                 help="use at most this much of the input (default: 4 model windows)")
  _add_force(p)
  p.set_defaults(fn=cmd_report)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m sparse_jax", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  register(parser.add_subparsers(dest="command", required=True))
  return parser


def run(args):
  """Runs a parsed command; returns the exit status (2 and one `error:` line on UserError)."""
  try:
    args.fn(args)
  except UserError as e:
    message = " ".join(str(e).split())
    print(f"error: {message}", file=sys.stderr)
    return 2
  return 0


def main(argv=None):
  return run(build_parser().parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
