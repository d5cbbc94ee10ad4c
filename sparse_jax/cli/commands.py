"""The codec as a command-line tool: encode, decode, edit, info, report.

Wired into `python -m sparse_jax` through `register(subparsers)`; `main(argv)` runs the same
commands on their own (tests, scripts).  Usage:

  encode IN.(wav|flac|ogg|mp3) OUT.sjx [--workdir DIR] [--events N | --kbps R]
         [--residual-threshold X] [--at-onsets] [--bits 8|16] [--refine N] [--force]
  encode IN.wav OUT.wav [--workdir DIR] [--sjx F.sjx] [decode options]   one-step round trip
  encode DIR OUTDIR [--workdir DIR]                a tree of audio files -> the same tree of .sjx
  decode IN.sjx OUT.wav [--workdir DIR] [--model-format] [--rescale] [--float]
         [--ignore-model-id] [--max-seconds S] [--force]
  decode DIR OUTDIR [--workdir DIR]                a tree of .sjx files -> the same tree of .wav
  edit IN.sjx OUT.sjx [--random-vectors] [--random-times] [--perturb SCALE] [--drop I,J,...]
       [--drop-range T0:T1] [--shift SECONDS] [--scale-gains F] [--seed S] [--keep I,J,...]
       [--transpose SEMITONES --model MODEL]
       [--export-json F.json] [--import-json F.json] [--bits 8|16] [--max-seconds S] [--force]
  info IN.sjx [--json] [--max-seconds S]
  report IN.wav [--workdir DIR] --out REPORT_DIR [--seed S] [--max-seconds X] [--refine N] [--force]

Without --workdir the shipped model (sparse_jax/pretrained/model.npz) encodes and decodes;
--workdir (alias --model) names a training run or an exported generator file instead.

Decode gives back what went in: the recording's sample rate, channel count and RMS level, all
stored in the `.sjx` file (the content itself is the model's: mono, band-limited to its rate).
--model-format writes the model's raw output instead (its rate, mono, the level as rendered).

`-` stands for standard input or output where the format allows it: audio in (`encode -`), events
in and out (`encode IN -`, `decode - OUT.wav`, `edit - -`, `info -`) and WAV out (`decode IN -`).
Summaries then go to stderr, so standard output holds only the data.

Bad input (unreadable audio, a corrupt / truncated / foreign / hostile `.sjx`, a missing
checkpoint, a bad option value) prints one line `error: ...` on stderr and exits with status 2.
Input paths are checked before JAX and the model are loaded, so a typo fails in a fraction of a
second.  Outputs are written
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

from sparse_jax import files
from sparse_jax.audio_io import AUDIO_FILE
from sparse_jax.errors import UserError

AUDIO_OUT_EXTENSIONS = (".wav", ".flac", ".ogg")
# Standard input or output, where the format allows it.
STDIO = "-"
# `--rescale` scales a decoded peak above full scale to this (encodec's -r does the same).
RESCALE_PEAK = 0.99

# `info` lists the events of each window up to this many windows; beyond, a summary.
INFO_MAX_WINDOWS_LISTED = 64


def _api():
  """The Python API, imported when a command needs it: it brings JAX, which a command that fails
  on its arguments never needs."""
  from sparse_jax import api
  return api


def load_codec(model):
  """The Python API's cached codec."""
  return _api().load_codec(model)


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
  if path == STDIO:
    return
  _check_output_folder(path)
  if os.path.isdir(path):
    raise UserError(f"{path}: is a folder; pass a file path")
  if os.path.lexists(path) and not force:
    raise UserError(f"{path}: already exists; pass --force (-f) to overwrite it")


def _check_audio_output(path, force):
  ext = _audio_ext(path)
  if ext not in AUDIO_OUT_EXTENSIONS:
    raise UserError(f"{path}: cannot write {ext or 'extension-less'} audio; use "
                    f"{', '.join(AUDIO_OUT_EXTENSIONS)}")
  _check_output(path, force)


def _check_max_seconds(value):
  if value is not None and not (math.isfinite(value) and value > 0):
    raise UserError(f"--max-seconds {value:g}: must be a positive number of seconds; pass e.g. "
                    "--max-seconds 600")


def _check_input(path, what):
  """One line unless `path` is `-` or a regular file (checked before anything heavy loads)."""
  if path != STDIO:
    files.check_input_file(path, what)


def _check_seed(seed):
  # numpy's generators take only non-negative seeds (a negative one is a ValueError traceback).
  if seed < 0:
    raise UserError(f"--seed {seed}: must be >= 0; pass e.g. --seed 0")


def _audio_ext(path):
  """The audio format of an output path: standard output carries WAV."""
  return ".wav" if path == STDIO else os.path.splitext(path)[1].lower()


def _check_distinct(src, dst):
  if STDIO not in (src, dst) and os.path.abspath(src) == os.path.abspath(dst):
    raise UserError(f"{dst}: the output would overwrite the input; choose another output path")


def _read_events(path, max_seconds=None):
  """(EventSet, bits per vector value, file bytes) of a `.sjx` file or standard input (`-`)."""
  from sparse_jax.codec import sjx
  _check_max_seconds(max_seconds)
  # Header offset 32 holds the bits; the reader accepted the file, so it is there.
  if path == STDIO:
    data = sys.stdin.buffer.read()
    return (sjx.decode_bytes(data, name="<stdin>", max_seconds=max_seconds), data[32],
            len(data))
  events = sjx.read(path, max_seconds=max_seconds)
  with open(path, "rb") as f:
    f.seek(32)
    bits = f.read(1)[0]
  return events, bits, os.path.getsize(path)


def _write_events(path, events, bits):
  """Writes a `.sjx` file (atomically) or its bytes to standard output; returns the byte count."""
  from sparse_jax.codec import sjx
  if path == STDIO:
    data = sjx.encode_bytes(events, bits)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return len(data)
  sjx.write(path, events, bits=bits)
  return os.path.getsize(path)


def _shown(path):
  """A path as summaries show it (standard output is no file name)."""
  return "<stdout>" if path == STDIO else path


def _say(args, text):
  """A summary line: on stdout, unless stdout carries the command's data (`-`), then stderr."""
  print(text, file=sys.stderr if getattr(args, "output", None) == STDIO else sys.stdout)


def _write_text_atomic(path, text):
  _check_output_folder(path)
  try:
    files.write_text(path, text)
  except OSError as e:
    raise UserError(f"{path}: cannot write: {e.strerror or e}; check the path") from None


# ------------------------------------------------------------------------------------------------
# Commands.


def _check_decode_options(args, output):
  """Decode options that do not fit the output, in one line, before anything is read."""
  if args.float and _audio_ext(output) != ".wav":
    raise UserError("--float writes 32-bit float samples, which only .wav holds; use OUT.wav")
  if args.float and args.rescale:
    raise UserError("--float keeps peaks above full scale and --rescale scales them away; pass "
                    "one of them")
  if args.model_format and args.original_format:
    raise UserError("--model-format writes the model's rate and mono, --original-format the "
                    "recording's; pass one of them")


def _fit_to_format(audio, args, ext):
  """(audio, note, clipped): scaled below full scale with --rescale; else how many samples the
  output format will clip (float WAVs clip none)."""
  peak = float(np.abs(audio).max()) if audio.size else 0.0
  subtype = "FLOAT" if args.float else None
  if args.rescale and peak > RESCALE_PEAK:
    audio = audio * np.float32(RESCALE_PEAK / peak)
    return audio, f", rescaled by {RESCALE_PEAK / peak:.3f} (peak was {peak:.2f})", 0
  from sparse_jax import audio_io
  return audio, "", audio_io.clipped_samples(audio, subtype, ext)


def _clip_warning(name, clipped, n_samples):
  return (f"warning: {name}: {clipped} of {n_samples} samples clipped at full scale; pass "
          "--rescale (-r) to scale the output below it, or --float with a .wav to keep the peaks")


def _write_decoded(codec, events, args):
  """Decodes `events` into args.output (a file or `-`) with the decode options; prints a line."""
  from sparse_jax import audio_io
  start = time.time()
  audio, rate = _api().decode(codec, events, model_format=args.model_format,
                              ignore_model_id=getattr(args, "ignore_model_id", False),
                              progress=not args.quiet)
  seconds = time.time() - start
  ext = _audio_ext(args.output)
  audio, note, clipped = _fit_to_format(audio, args, ext)
  subtype = "FLOAT" if args.float else None
  if args.output == STDIO:
    sys.stdout.buffer.write(audio_io.audio_bytes(audio, rate, subtype=subtype, ext=ext))
    sys.stdout.buffer.flush()
  else:
    audio_io.write_audio(args.output, audio, rate, subtype=subtype)
  channels = 1 if audio.ndim == 1 else audio.shape[1]
  note += _format_note(events, args.model_format)
  _say(args, f"{_shown(args.output)}: {events.duration_seconds:.2f} s from {len(events)} events, "
             f"{rate} Hz, {channels} channel{'s' if channels > 1 else ''}, decoded in "
             f"{seconds:.2f} s{note}")
  if clipped:
    print(_clip_warning(_shown(args.output), clipped, audio.size), file=sys.stderr)


def _format_note(events, model_format):
  """Why a decode is not in the recording's format, as a phrase ('' when it is)."""
  from sparse_jax.codec import sjx
  if model_format:
    return ", the model's raw output (--model-format)"
  if not events.source_sample_rate:
    return (", at the model's rate and mono: the file does not store its recording's format "
            "(encoded before it was stored)")
  if not sjx.restorable(events.source_sample_rate, events.source_channels):
    return (f", at the model's rate and mono: the file claims {events.source_channels} channels "
            f"at {events.source_sample_rate} Hz, beyond what decode restores "
            f"({sjx.RESTORED_MAX_CHANNELS} channels, {sjx.RESTORED_MAX_RATE} Hz)")
  return ""


def _encode_options(args):
  """The encoder's options of an `encode` command, checked before the model is loaded."""
  if args.kbps is not None and args.events is not None:
    raise UserError("--kbps and --events both set the events per window; pass one of them")
  if args.kbps is not None and not (math.isfinite(args.kbps) and args.kbps > 0):
    raise UserError(f"--kbps {args.kbps:g}: must be a positive bitrate in kbit/s; pass e.g. "
                    "--kbps 3")
  if args.at_onsets:
    from sparse_jax import notes
    notes.check_installed()  # librosa, before the model is loaded
  return dict(kbps=args.kbps, n_events=args.events, residual_threshold=args.residual_threshold,
              bits=args.bits, refine=_refine_steps(args.refine),
              at_onsets=True if args.at_onsets else None)


def _refine_steps(text):
  """--refine N as an int (0 when absent), or one line naming the fix."""
  if text is None:
    return 0
  from sparse_jax.codec import refine
  try:
    return refine.check_steps(text)
  except UserError as e:
    raise UserError(f"--refine: {e}") from None


def _encode_summary(args, name, events, info, n_bytes, seconds):
  from sparse_jax.codec import sjx
  duration = events.duration_seconds
  kbps = sjx.bitrate_kbps(n_bytes, duration_seconds=duration)
  target = f", target {args.kbps:g}" if args.kbps is not None else ""
  _say(args, f"{_shown(name)}: {len(events)} events ({events.events_per_window} per window at "
             "most), "
             f"{duration:.2f} s, {kbps:.2f} kbit/s ({args.bits}-bit{target}), real-time factor "
             f"{seconds / duration:.3f} (encode {seconds:.2f} s incl. compilation / audio "
             f"{duration:.2f} s)")
  # The energy report (not stored in the file): first-half residual share left per window.
  left = info.shares_WxS1[np.arange(len(info.kept_W)), info.kept_W]
  _say(args, f"residual energy left per window (first-half L1 share): mean {left.mean():.3f}, "
             f"min {left.min():.3f}, max {left.max():.3f} over {len(left)} windows")
  if info.refine is not None:
    _say(args, _refine_summary(info.refine))


def _refine_summary(r):
  """One line on what `--refine N` changed (RefineInfo)."""
  (window, hop), plain, now = r.resolutions[-1], r.plain_error_V[-1], r.error_V[-1]
  lower = 100 * (plain - now) / plain if plain > 0 else 0.0
  kept = ("the plain encode was kept (refined was worse on the whole file)" if r.fell_back else
          f"{int(r.refined_W.sum())} of {len(r.refined_W)} windows took their refined events")
  return (f"refined: {r.steps} steps per window in {r.seconds:.1f} s; {kept}; decoded spectral "
          f"L1 error ({window}/{hop} STFT) {lower:.1f} % lower than without refinement")


def cmd_encode(args):
  if args.input != STDIO and os.path.isdir(args.input):
    return _encode_folder(args, _encode_options(args))
  _check_input(args.input, AUDIO_FILE)
  # OUT.wav (.flac, .ogg): encodec's one-step round trip; the events go to --sjx if asked.
  round_trip = args.output != STDIO and _audio_ext(args.output) in AUDIO_OUT_EXTENSIONS
  if round_trip:
    _check_audio_output(args.output, args.force)
    _check_decode_options(args, args.output)
    if args.sjx:
      _check_output(args.sjx, args.force)
      _check_distinct(args.input, args.sjx)
  else:
    _check_output(args.output, args.force)
    used = [f for f, on in (("--sjx", args.sjx), ("--original-format", args.original_format),
                            ("--model-format", args.model_format), ("--rescale", args.rescale),
                            ("--float", args.float)) if on]
    if used:
      raise UserError(f"{used[0]} applies to a round trip (encode IN OUT.wav); pass an audio "
                      f"output or leave {used[0]} out")
  _check_distinct(args.input, args.output)
  options = _encode_options(args)
  from sparse_jax import audio_io
  from sparse_jax.codec import sjx
  codec = load_codec(args.workdir)
  audio, rate = audio_io.read_audio(sys.stdin.buffer if args.input == STDIO else args.input)
  start = time.time()
  events, info = _api().encode(codec, audio, rate, progress=not args.quiet, return_info=True,
                               **options)
  seconds = time.time() - start
  if round_trip and not args.sjx:
    n_bytes = len(sjx.encode_bytes(events, args.bits))  # what the file would take: no file
  else:
    n_bytes = _write_events(args.sjx or args.output, events, args.bits)
  _encode_summary(args, args.sjx or args.output, events, info, n_bytes, seconds)
  if round_trip:
    _write_decoded(codec, events, args)


def _encode_folder(args, options):
  from sparse_jax import audio_io
  from sparse_jax.cli import folders
  from sparse_jax.codec import sjx
  if args.sjx or args.original_format or args.model_format or args.rescale or args.float:
    raise UserError("a folder encodes to .sjx files; --sjx and the decode options apply to one "
                    "file (encode IN OUT.wav)")
  folders.check_folders(args.input, args.output)
  pairs = folders.plan(args.input, args.output, folders.AUDIO_IN_EXTENSIONS, ".sjx")
  codec = load_codec(args.workdir)

  def encode_one(src, dst):
    audio, rate = audio_io.read_audio(src)
    # A second bar under the files' one: a long file shows its windows as they go.
    sjx.write(dst, _api().encode(codec, audio, rate, progress=not args.quiet, **options),
              bits=args.bits)

  failures = folders.run(pairs, encode_one, force=args.force, desc="encoding",
                       enabled=not args.quiet)
  return folders.summarize(len(pairs), failures, args.output, "encoded")


def cmd_decode(args):
  if args.input != STDIO and os.path.isdir(args.input):
    return _decode_folder(args)
  _check_audio_output(args.output, args.force)
  _check_distinct(args.input, args.output)
  _check_decode_options(args, args.output)
  # Checks the file before the model is loaded.
  events, _, _ = _read_events(args.input, args.max_seconds)
  if args.solo is not None:  # one event (or a few) alone, at its time, at the file's level
    from sparse_jax.codec import edit
    events = edit.keep(events, _parse_indices(args.solo, "--solo", len(events)))
  codec = load_codec(args.workdir)
  _check_model_of(codec, events, args)
  _write_decoded(codec, events, args)


def _check_model_of(codec, events, args):
  """The model id check, with the way out when the shipped model was not the encoder."""
  try:
    codec.check_compatible(events, ignore_model_id=args.ignore_model_id)
  except UserError as e:
    if args.workdir is not None:
      raise
    raise UserError(f"{e}; this file was not encoded by the shipped model: pass --workdir (or "
                    "--model) of the model that encoded it") from None


def _decode_folder(args):
  from sparse_jax import audio_io
  from sparse_jax.cli import folders
  from sparse_jax.codec import sjx
  if args.solo is not None:
    raise UserError("--solo picks events of one file; decode that file, not a folder")
  _check_decode_options(args, "out.wav")
  _check_max_seconds(args.max_seconds)
  folders.check_folders(args.input, args.output)
  pairs = folders.plan(args.input, args.output, (".sjx",), ".wav")
  codec = load_codec(args.workdir)
  clipped_files = []

  def decode_one(src, dst):
    events = sjx.read(src, max_seconds=args.max_seconds)
    _check_model_of(codec, events, args)
    audio, rate = _api().decode(codec, events, model_format=args.model_format,
                                ignore_model_id=args.ignore_model_id, progress=not args.quiet)
    audio, _, clipped = _fit_to_format(audio, args, ".wav")
    audio_io.write_audio(dst, audio, rate, subtype="FLOAT" if args.float else None)
    if clipped:
      clipped_files.append(os.path.relpath(src, args.input))

  failures = folders.run(pairs, decode_one, force=args.force, desc="decoding",
                       enabled=not args.quiet)
  if clipped_files:
    print(f"warning: {len(clipped_files)} file(s) clipped at full scale (first: "
          f"{clipped_files[0]}); pass --rescale (-r) to scale each below it, or --float to keep "
          "the peaks", file=sys.stderr)
  return folders.summarize(len(pairs), failures, args.output, "decoded")


def _parse_indices(text, option, n_events):
  """Event indices like 0,5,12 or 3-7 (inclusive), each checked against the file's count."""
  out = []
  try:
    for part in (x.strip() for x in text.split(",")):
      if not part:
        continue
      lo, sep, hi = part.partition("-")
      first, last = (int(lo), int(hi)) if sep and lo else (int(part), int(part))
      out.extend(range(first, last + 1))
  except ValueError:
    raise UserError(f"{option} {text!r}: expected event indices like 0,5,12 or 3-7 (see edit "
                    "--export-json for the index column)") from None
  bad = [i for i in out if not 0 <= i < n_events]
  if bad or not out:
    raise UserError(f"{option} {text!r}: the file has events 0 to {n_events - 1}"
                    + (f"; {bad[0]} is not one" if bad else "; name at least one"))
  return out


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


def _imported(name, table, events, source):
  """What `--import-json` brought in, compared with the input file's events, as a phrase."""
  what = f"imported {len(table)} events from {os.path.basename(name)}"
  if len(table) != len(events):
    return f"{what} ({source} has {len(events)})"
  changed = [(np.count_nonzero((table.frames != events.frames)
                               | (table.offsets != events.offsets)), "times"),
             (np.count_nonzero(table.gains != events.gains), "gains"),
             (np.count_nonzero(np.any(table.vectors != events.vectors, axis=1)), "vectors")]
  parts = [f"{n} {label}" for n, label in changed if n]
  return f"{what}: {', '.join(parts) if parts else 'nothing'} changed"


def cmd_edit(args):
  from sparse_jax.codec import edit
  _check_output(args.output, args.force)
  if args.export_json:
    _check_output(args.export_json, args.force)
  _check_distinct(args.input, args.output)
  _check_edit_values(args)
  if args.import_json:
    _check_input(args.import_json, "a JSON table (edit --export-json)")
  events, file_bits, _ = _read_events(args.input, args.max_seconds)
  bits = args.bits or file_bits
  done = []
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
    done.append(_imported(args.import_json, table, events, args.input))
    if not table.source_sample_rate:  # a table exported before the format was stored
      table = table.replace(source_sample_rate=events.source_sample_rate,
                            source_channels=events.source_channels)
    events = table
  duration = events.duration_seconds
  if args.shift is not None and abs(args.shift) > duration:
    raise UserError(f"--shift {args.shift:g}: longer than the file ({duration:.2f} s), every "
                    f"event would leave it; pass a shift between -{duration:.2f} and "
                    f"{duration:.2f}")
  rng = np.random.default_rng(args.seed)
  try:
    if args.keep is not None:
      before = len(events)
      events = edit.keep(events, _parse_indices(args.keep, "--keep", len(events)))
      done.append(f"kept {len(events)} of {before}")
    if args.drop is not None or args.drop_range is not None:
      indices = (_parse_indices(args.drop, "--drop", len(events)) if args.drop is not None
                 else None)
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
    if args.transpose is not None:
      from sparse_jax.codec import transpose
      events, moved = transpose.transpose(load_codec(args.workdir), events, args.transpose,
                                          bits=bits)
      done.append(f"{moved['moved']} of {moved['pitched']} pitched events transposed by "
                  f"{args.transpose:+d} semitones ({moved['out_of_range']} would leave the "
                  f"model's pitches, {moved['missed']} found no vector at the new pitch)")
  except ValueError as e:
    raise UserError(f"edit {args.input}: {e}") from None
  if args.export_json:
    _write_text_atomic(args.export_json, edit.to_json(events))
  _write_events(args.output, events, bits)
  _say(args, f"{_shown(args.output)}: {len(events)} events ({', '.join(done) or 'no edits'})")


def cmd_midi(args):
  from sparse_jax import notes
  if args.output == STDIO or os.path.splitext(args.output)[1].lower() not in (".mid", ".midi"):
    raise UserError(f"{args.output}: a MIDI file is written to a path ending in .mid")
  _check_output(args.output, args.force)
  _check_distinct(args.input, args.output)
  events, _, _ = _read_events(args.input, args.max_seconds)
  notes.check_installed()  # before the model is loaded
  codec = load_codec(args.workdir)
  _check_model_of(codec, events, args)
  sounding = events.select(events.gains > 0)  # the file's silent fillers are no notes
  read = notes.read_notes(codec, sounding)
  if not args.each_event:
    read, _ = notes.group(read)
  counts = notes.write_midi(args.output, read)
  reading = ("one per event" if args.each_event
             else "runs of same-pitch events read as one note")
  _say(args, f"{args.output}: {counts['notes']} notes and {counts['percussion']} percussion hits "
             f"from {len(sounding)} events ({reading}; pitch heard from each event alone)")


def info_dict(path, max_seconds=None):
  """The summary that `info` prints, as a dict."""
  from sparse_jax.codec import sjx
  events, bits, size = _read_events(path, max_seconds)
  counts = events.window_counts
  duration = events.duration_seconds
  return {
      "file": path,
      "events": len(events),
      "duration_s": round(duration, 4),
      "bitrate_kbps": (round(sjx.bitrate_kbps(size, duration_seconds=duration), 3)
                       if duration > 0 else None),
      "bytes": size,
      "bits": bits,
      "model_id": events.model_id.hex(),
      "sample_rate": events.sample_rate,
      "hop": events.hop,
      "window_samples": events.window_samples,
      "event_dim": events.event_dim,
      "events_per_window_setting": events.events_per_window,
      # Refined at encode time (encode --refine N): the flag bit of the header (sjx.py).
      "refined": events.refined,
      "windows": int(len(counts)),
      # Proportional to the events: the reader bounds the windows by them (sjx.py).
      "events_per_window": [int(c) for c in counts],
      # The recording that was encoded (decode --original-format); None: not stored (older file).
      "source_sample_rate": events.source_sample_rate or None,
      "source_channels": events.source_channels or None,
      # The gain decode applies to restore the recording's RMS level; None: not stored.
      "level": round(events.level, 4) or None,
  }


def cmd_info(args):
  if args.config:  # the model's parameter counts (python -m sparse_jax info --config ...)
    from sparse_jax import info as model_info
    print(json.dumps(model_info.parameter_counts_of_file(args.config), indent=2))
    return
  if not args.input:
    raise UserError("info needs a .sjx file (info IN.sjx) or a config (info --config FILE.py)")
  info = info_dict(args.input, args.max_seconds)
  if args.json:
    print(json.dumps(info, indent=2))
    return
  width = max(len(k) for k in info)
  for key, value in info.items():
    if key == "events_per_window":
      value = _counts_text(value)
    print(f"{key.ljust(width)}  {value}")


def _counts_text(counts):
  """Events per window as text: each window's count, or a summary when there are many."""
  if len(counts) <= INFO_MAX_WINDOWS_LISTED:
    return " ".join(str(v) for v in counts)
  c = np.asarray(counts)
  return (f"min {c.min()}, median {np.median(c):g}, max {c.max()} over {c.size} windows "
          f"({np.count_nonzero(c == 0)} without events; --json lists every window)")


def cmd_report(args):
  _check_input(args.input, AUDIO_FILE)
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
  refine_steps = _refine_steps(args.refine)
  if args.max_seconds is not None and not (math.isfinite(args.max_seconds)
                                           and args.max_seconds > 0):
    raise UserError(f"--max-seconds {args.max_seconds}: must be positive; pass e.g. "
                    "--max-seconds 10")
  from sparse_jax import audio_io
  from sparse_jax.report import assemble as report
  codec = load_codec(args.workdir)
  audio = audio_io.load_audio(args.input, codec.sample_rate)
  max_samples = None if args.max_seconds is None else int(args.max_seconds * codec.sample_rate)
  if max_samples is not None and max_samples < 1:
    raise UserError(f"--max-seconds {args.max_seconds}: must be positive; pass e.g. "
                    "--max-seconds 10")
  index = report.write_report(audio, codec, args.out, seed=args.seed, max_samples=max_samples,
                              source_name=os.path.basename(args.input), progress=not args.quiet,
                              refine=refine_steps)
  print(f"report written: {index}")


# ------------------------------------------------------------------------------------------------
# Parser.


def _add_model(p, what):
  p.add_argument("--workdir", "--model", dest="workdir", default=None, metavar="MODEL",
                 help=f"{what}: a training workdir or an exported generator (.npz); default: "
                      "the shipped model (sparse_jax/pretrained/model.npz)")


def _add_force(p):
  p.add_argument("-f", "--force", action="store_true",
                 help="overwrite an existing output (default: refuse)")


def _bits(text):
  if text not in ("8", "16"):
    raise argparse.ArgumentTypeError("bits must be 8 or 16")
  return int(text)


def _add_max_seconds(p):
  p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                 help="accept a file that declares up to S seconds of audio though its events "
                      "span less (an old file of mostly silence); default: what its events span")


def _add_decode_options(p, when):
  p.add_argument("--model-format", action="store_true",
                 help=when + "write the model's raw output: its sample rate, mono, the level as "
                      "rendered (default: the recording's rate, channel count and RMS level, "
                      "which the file stores; the mono signal goes to every channel)")
  # The default since the level was stored; kept so that scripts that pass it still run.
  p.add_argument("--original-format", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--rescale", "-r", action="store_true",
                 help=when + f"scale the output to a peak of {RESCALE_PEAK} if it would clip "
                      "(default: clip, and say how many samples)")
  p.add_argument("--float", action="store_true",
                 help=when + "32-bit float .wav (keeps peaks above full scale)")


def _add_refine(p, note=""):
  # A string, checked by the command: a bad value is one `error:` line, not argparse's usage.
  p.add_argument("--refine", default=None, metavar="N",
                 help="refine each window's events by N steps of analysis by synthesis (Adam on "
                      "vectors, gains and fine offsets against the decoded audio; slower, never "
                      f"worse than without; default 0){note}")


def register(subparsers, info_name: str = "info"):
  """Adds encode, decode, edit, midi, info (under `info_name`) and report to an argparse
  subparsers."""
  p = subparsers.add_parser(
      "encode", help="audio -> .sjx events (any length, rate, channels); audio -> audio (a round "
                     "trip); a folder -> a folder")
  p.add_argument("input", help="audio file (wav, flac, ogg, mp3; any rate and channel count), "
                               "- for standard input, or a folder of them")
  p.add_argument("output", help="the .sjx file to write (- for standard output); an audio file "
                                "(.wav, .flac, .ogg) for a round trip that writes no .sjx; a "
                                "folder when the input is one")
  _add_model(p, "the model")
  p.add_argument("--events", type=int, default=None,
                 help="events per window (default: the model's n_events); with "
                      "--residual-threshold, the most events per window")
  p.add_argument("--kbps", "-b", type=float, default=None, metavar="RATE",
                 help="bitrate target in kbit/s: the most events per window (up to the model's "
                      "n_events) whose file stays at or below it")
  p.add_argument("--residual-threshold", type=float, default=None,
                 help="keep events until the window's first-half residual energy share falls "
                      "below this value (0..1)")
  p.add_argument("--bits", type=_bits, default=8, help="bits per vector value: 8 or 16")
  p.add_argument("--at-onsets", action="store_true",
                 help="events start only at note onsets that librosa's onset detector finds: "
                      "fewer, note-like events, less of the sound explained (docs/notes.md); "
                      "always on for a model trained with the rule")
  p.add_argument("--sjx", default=None, metavar="F.sjx",
                 help="with an audio output (a round trip): also write the events here")
  _add_refine(p)
  _add_decode_options(p, "with an audio output (a round trip): ")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  _add_force(p)
  p.set_defaults(fn=cmd_encode)

  p = subparsers.add_parser("decode", help=".sjx events -> audio file; a folder -> a folder")
  p.add_argument("input", help="the .sjx file, - for standard input, or a folder of them")
  p.add_argument("output", help="audio file to write (.wav, .flac, .ogg; - for a WAV on standard "
                                "output), or a folder (of .wav) when the input is one")
  _add_model(p, "the model that encoded the file")
  p.add_argument("--ignore-model-id", action="store_true",
                 help="decode even if another checkpoint encoded the file")
  p.add_argument("--solo", default=None, metavar="I[,J,...]",
                 help="decode only these events (indices like 3 or 0,5,12 or 3-7: the index "
                      "column of edit --export-json), each at its time: hear one event alone")
  _add_decode_options(p, "")
  _add_max_seconds(p)
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  _add_force(p)
  p.set_defaults(fn=cmd_decode)

  p = subparsers.add_parser("edit", help="edit the events of a .sjx file")
  p.add_argument("input", help="the .sjx file (- for standard input)")
  p.add_argument("output", help="the edited .sjx file to write (- for standard output)")
  p.add_argument("--random-vectors", action="store_true",
                 help="replace every vector with a random one (U(min, max) of the file)")
  p.add_argument("--random-times", action="store_true", help="move every event to a random time")
  p.add_argument("--perturb", type=float, default=None, metavar="SCALE",
                 help="move every vector by one shared random vector of this length")
  p.add_argument("--keep", default=None, metavar="I,J,...",
                 help="keep only these events (indices like 0,5,12 or 3-7; applied first)")
  p.add_argument("--drop", default=None, metavar="I,J,...",
                 help="remove events by index (the index column of --export-json)")
  p.add_argument("--drop-range", default=None, metavar="T0:T1",
                 help="remove events starting in [T0, T1) seconds")
  p.add_argument("--shift", type=float, default=None, metavar="SECONDS",
                 help="move every event in time (events moved outside the file are dropped)")
  p.add_argument("--scale-gains", type=float, default=None, metavar="F",
                 help="multiply every gain by F")
  p.add_argument("--transpose", type=int, default=None, metavar="SEMITONES",
                 help="move every pitched event by this many semitones, time and gain kept "
                      "(the timbre may change; a model with a pitch control: --model)")
  _add_model(p, "the model that encoded the file (read by --transpose only)")
  p.add_argument("--seed", type=int, default=0, help="seed of the random edits")
  p.add_argument("--export-json", default=None, metavar="F.json",
                 help="also write the edited events as an editable JSON table")
  p.add_argument("--import-json", default=None, metavar="F.json",
                 help="take the events from this (hand-edited) table instead of the input's")
  p.add_argument("--bits", type=_bits, default=None,
                 help="bits per vector value of the output (default: the input's)")
  _add_max_seconds(p)
  _add_force(p)
  p.set_defaults(fn=cmd_edit)

  p = subparsers.add_parser("midi", help=".sjx events -> a MIDI file of notes (pitch from the "
                                         "model's pitch control or heard from each event "
                                         "alone, velocity from its level)")
  p.add_argument("input", help="the .sjx file (- for standard input)")
  p.add_argument("output", help="the .mid file to write")
  _add_model(p, "the model that encoded the file")
  p.add_argument("--each-event", action="store_true",
                 help="one note per event (default: a run of same-pitch events is one note)")
  _add_max_seconds(p)
  _add_force(p)
  p.set_defaults(fn=cmd_midi, ignore_model_id=False)

  p = subparsers.add_parser(info_name, help="summary of a .sjx file, or a config's parameters")
  p.add_argument("input", nargs="?", default=None, help="the .sjx file (- for standard input)")
  p.add_argument("--config", default=None,
                 help="print the parameter counts of configs/FILE.py[:preset] instead (JSON)")
  p.add_argument("--json", action="store_true", help="print JSON instead of aligned text")
  _add_max_seconds(p)
  p.set_defaults(fn=cmd_info)

  p = subparsers.add_parser("report", help="HTML report (a folder: index.html, its audio and "
                                           "figures): players, timeline, per-step figures")
  p.add_argument("input", help="audio file")
  _add_model(p, "the model")
  p.add_argument("--out", required=True, help="folder to write index.html and its files into")
  p.add_argument("--seed", type=int, default=0, help="seed of the edit experiments")
  p.add_argument("--max-seconds", type=float, default=None,
                 help="use at most this much of the input (default: all of it)")
  _add_refine(p, " (the report shows the refined reconstruction beside the plain one)")
  p.add_argument("--quiet", action="store_true", help="no progress")
  _add_force(p)
  p.set_defaults(fn=cmd_report)


def build_parser():
  parser = argparse.ArgumentParser(prog="python -m sparse_jax", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  register(parser.add_subparsers(dest="command", required=True))
  return parser


def run(args):
  """Runs a parsed command; returns the exit status: 0, 1 when files of a folder failed (they
  are listed), 2 and one `error:` line on UserError."""
  from sparse_jax import diagnostics
  try:
    with diagnostics.without_xla_alarms():
      return args.fn(args) or 0
  except UserError as e:
    message = " ".join(str(e).split())
    print(f"error: {message}", file=sys.stderr)
    return 2
  except BrokenPipeError:
    # The reader of standard output left (`... | head`): nothing more to say to it, and no
    # traceback; Python's own flush at exit must not fail again (its documented recipe).
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


def main(argv=None):
  return run(build_parser().parse_args(argv))


if __name__ == "__main__":
  sys.exit(main())
