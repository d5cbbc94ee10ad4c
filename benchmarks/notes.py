r"""Events as notes: event times and pitches against labelled music, beside two anchors.

  python -m benchmarks.notes                                 # the embedded classical test split
  python -m benchmarks.notes --workdir MODEL --labels DIR [DIR ...] --out OUT [--seconds 15]

Each DIR holds NAME.wav and NAME.csv in MusicNet's label format (`start_time,end_time,instrument,
note,start_beat,end_beat,note_value`, times in samples of the WAV), as the embedded set
(`python -m sparse_jax build-data`) and MusicNet's test set write them.  The first `--seconds` of
each clip (all with 0) are encoded (`api.encode`, plain) and scored:

  onset_precision / onset_recall / onset_f1   mir_eval.onset.f_measure, +-50 ms, of the event
      times (events below `--min-gain-share` of the clip's loudest gain ignored, events within
      50 ms of each other merged) against the labelled onsets (a chord's notes: one onset);
  events_per_note   events kept (after the gain rule, before merging) per labelled note;
  note_f1           mir_eval.transcription (onset within 50 ms and pitch within 50 cents,
      offsets ignored) of the events read as notes: each event's pitch from the model's pitch
      control where it has one (a `harmonic` block), else heard from the event rendered alone
      (`sparse_jax.notes`: pYIN); unpitched events left out;
  grouped_*         the same after `notes.group` reads a run of same-pitch events as one note
      (what `sparse-jax midi` writes): a reading of the events, not fewer events.

Anchors on the same audio and labels: librosa's onset detector (`onset_detect`, defaults) and
Spotify's basic-pitch (its ONNX model, offline; install with
`pip install --no-deps basic-pitch==0.4.0 'resampy<0.4.3' && pip install onnxruntime pretty_midi`;
left out, and said, when it does not import).  Overall figures are means over clips.  Writes
OUT/results.json (overall and per clip) and OUT/results.md.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks import one_line_errors
from sparse_jax.errors import UserError

ONSET_WINDOW_S = 0.05
PITCH_TOLERANCE_CENTS = 50.0
NOTE_SECONDS = 0.1  # the length given to estimated notes: offsets are not scored


def read_labels(csv_path: str, sample_rate: int, seconds: float):
  """(onsets_s, offsets_s, midi_notes) of the labelled notes starting before `seconds`.

  Raises:
    UserError: a file that is not MusicNet's label format, in one line.
  """
  try:
    rows = np.atleast_1d(np.genfromtxt(csv_path, delimiter=",", names=True, dtype=None,
                                       encoding="utf-8", invalid_raise=True))
    onsets = rows["start_time"].astype(np.float64) / sample_rate
    offsets = rows["end_time"].astype(np.float64) / sample_rate
    notes = rows["note"].astype(np.float64)
  except (ValueError, TypeError, KeyError, IndexError, OSError, UnicodeDecodeError) as e:
    raise UserError(f"{csv_path}: not MusicNet's label format (start_time,end_time,instrument,"
                    f"note,...; times in samples): {type(e).__name__}: {str(e)[:80]}") from None
  if not (np.all(np.isfinite(onsets)) and np.all(np.isfinite(notes))):
    raise UserError(f"{csv_path}: non-numeric start times or notes; fix or remove the file")
  keep = onsets < seconds if seconds > 0 else np.ones(len(onsets), bool)
  return onsets[keep], offsets[keep], notes[keep]


def merge_times(times_s, within_s: float = ONSET_WINDOW_S) -> np.ndarray:
  """Sorted times with each run closer than `within_s` to its first time kept once."""
  out: list = []
  for t in np.sort(np.asarray(times_s, np.float64)):
    if not out or t - out[-1] >= within_s:
      out.append(t)
  return np.asarray(out)


def onset_scores(ref_onsets, est_onsets) -> dict:
  import mir_eval
  ref, est = merge_times(ref_onsets), merge_times(est_onsets)
  if len(ref) == 0 or len(est) == 0:
    return {"onset_precision": 0.0, "onset_recall": 0.0, "onset_f1": 0.0}
  f, p, r = mir_eval.onset.f_measure(ref, est, window=ONSET_WINDOW_S)
  return {"onset_precision": p, "onset_recall": r, "onset_f1": f}


def note_f1(ref_onsets, ref_offsets, ref_midi, est_onsets, est_hz) -> float:
  """mir_eval's note F-measure, onsets and pitches only."""
  import mir_eval
  est_onsets, est_hz = np.asarray(est_onsets, np.float64), np.asarray(est_hz, np.float64)
  voiced = np.isfinite(est_hz) & (est_hz > 0)
  if len(ref_onsets) == 0 or not voiced.any():
    return 0.0
  ref_int = np.stack([ref_onsets, np.maximum(ref_offsets, ref_onsets + 1e-3)], axis=1)
  est_int = np.stack([est_onsets[voiced], est_onsets[voiced] + NOTE_SECONDS], axis=1)
  _, _, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
      ref_int, mir_eval.util.midi_to_hz(ref_midi), est_int, est_hz[voiced],
      onset_tolerance=ONSET_WINDOW_S, pitch_tolerance=PITCH_TOLERANCE_CENTS, offset_ratio=None)
  return float(f)


def score_codec(codec, audio, sr, labels, min_gain_share: float, encode_options: dict) -> dict:
  from sparse_jax import api, notes
  onsets, offsets, midi = labels
  events = api.encode(codec, audio, sr, **encode_options)
  events = events.select(events.gains > 0)
  if len(events):
    events = events.select(events.gains >= min_gain_share * events.gains.max())
  read = notes.read_notes(codec, events)
  grouped, _ = notes.group(read)
  out = onset_scores(onsets, read.onsets)
  out["events_per_note"] = len(events) / max(len(onsets), 1)
  out["note_f1"] = note_f1(onsets, offsets, midi, read.onsets, read.pitches_hz)
  out["unpitched_share"] = float(np.mean(~np.isfinite(read.pitches_hz))) if len(read.onsets) else 0.0
  g = onset_scores(onsets, grouped.onsets)
  out.update({"grouped_onset_f1": g["onset_f1"],
              "grouped_notes_per_note": len(grouped.onsets) / max(len(onsets), 1),
              "grouped_note_f1": note_f1(onsets, offsets, midi, grouped.onsets,
                                         grouped.pitches_hz)})
  return out


def score_librosa(audio, sr, labels) -> dict:
  import librosa
  onsets, _, _ = labels
  est = librosa.onset.onset_detect(y=audio.astype(np.float32), sr=sr, units="time")
  out = onset_scores(onsets, est)
  out["events_per_note"] = len(est) / max(len(onsets), 1)
  return out


def basic_pitch_model():
  """basic-pitch's ONNX model, or (None, why not)."""
  try:
    import logging
    logging.getLogger().setLevel(logging.ERROR)  # its warnings about TensorFlow and TFLite
    from basic_pitch import FilenameSuffix, build_icassp_2022_model_path
    from basic_pitch.inference import Model
    return Model(build_icassp_2022_model_path(FilenameSuffix.onnx)), None
  except Exception as e:  # noqa: BLE001 (any import or model failure: the anchor is left out)
    return None, f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"


def score_basic_pitch(model, audio, sr, labels) -> dict:
  import contextlib
  import io
  import tempfile

  from basic_pitch.inference import predict

  from sparse_jax import audio_io, synth
  onsets, offsets, midi = labels
  with tempfile.TemporaryDirectory() as folder:  # basic-pitch reads a file: the scored part
    path = os.path.join(folder, "clip.wav")
    audio_io.write_audio(path, audio, sr)
    with contextlib.redirect_stdout(io.StringIO()):
      _, _, note_events = predict(path, model)
  est = [(float(s), float(p)) for s, _, p, *_ in note_events]
  est_onsets = np.array([s for s, _ in est])
  est_hz = synth.midi_to_hz([p for _, p in est])
  out = onset_scores(onsets, est_onsets)
  out["events_per_note"] = len(est) / max(len(onsets), 1)
  out["note_f1"] = note_f1(onsets, offsets, midi, est_onsets, est_hz)
  return out


def clips_of(dirs, max_clips: int) -> list:
  """(wav, csv) pairs of the label folders in name order (`max_clips` of them, evenly spaced)."""
  pairs = []
  for d in dirs:
    if not os.path.isdir(d):
      raise UserError(f"--labels {d}: no such folder; build the embedded set (python -m "
                      "sparse_jax build-data) or pass folders of NAME.wav + NAME.csv")
    for name in sorted(os.listdir(d)):
      stem, ext = os.path.splitext(name)
      if ext.lower() == ".wav" and os.path.isfile(os.path.join(d, stem + ".csv")):
        pairs.append((os.path.join(d, name), os.path.join(d, stem + ".csv")))
  if not pairs:
    raise UserError(f"no NAME.wav + NAME.csv pairs in {', '.join(dirs)}; pass labelled folders")
  if 0 < max_clips < len(pairs):  # evenly spaced in name order: every composer, not the first
    pairs = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, max_clips).round()]
  return pairs


def mean_rows(per_clip: dict) -> dict:
  methods = {m for clip in per_clip.values() for m in clip}
  out = {}
  for m in sorted(methods):
    rows = [clip[m] for clip in per_clip.values() if m in clip]
    out[m] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  return out


def table(overall: dict) -> str:
  cols = ["onset_precision", "onset_recall", "onset_f1", "events_per_note", "note_f1",
          "grouped_onset_f1", "grouped_notes_per_note", "grouped_note_f1"]
  lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
  for method, row in overall.items():
    cells = [f"{row[c]:.2f}" if c in row else "" for c in cols]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", "--model", dest="workdir", default=None,
                 help="training workdir or exported .npz (default: the shipped model)")
  p.add_argument("--labels", nargs="+", default=None, metavar="DIR",
                 help="folders of NAME.wav + NAME.csv (default: the embedded test split)")
  p.add_argument("--out", default="benchmarks/results/notes")
  p.add_argument("--seconds", type=float, default=15.0, help="seconds scored per clip (0: all)")
  p.add_argument("--clips", type=int, default=10, help="clips scored, evenly spaced in name order (0: all)")
  p.add_argument("--min-gain-share", type=float, default=0.02)
  p.add_argument("--events", type=int, default=None, help="events per window (default: model's)")
  p.add_argument("--residual-threshold", type=float, default=None,
                 help="stop a window's events once this share of its energy is left")
  p.add_argument("--at-onsets", action="store_true",
                 help="events start only at onsets librosa detects (encode --at-onsets)")
  p.add_argument("--no-anchors", action="store_true", help="leave out librosa and basic-pitch")
  args = p.parse_args(argv)
  return one_line_errors(run, args)


def run(args) -> int:
  from sparse_jax import api, audio_io
  from sparse_jax.data import classical
  if not (0 <= args.min_gain_share < 1) or args.seconds < 0:
    raise UserError("--min-gain-share is in [0, 1) and --seconds >= 0")
  dirs = args.labels or [str(classical.default_root() / "test")]
  pairs = clips_of(dirs, args.clips)
  codec = api.load_codec(args.workdir)
  options = {k: v for k, v in (("n_events", args.events),
                               ("residual_threshold", args.residual_threshold),
                               ("at_onsets", args.at_onsets or None)) if v is not None}
  bp_model, bp_missing = (None, "--no-anchors") if args.no_anchors else basic_pitch_model()
  per_clip: dict = {}
  started = time.time()
  for i, (wav, csv) in enumerate(pairs):
    audio, sr = audio_io.read_audio(wav)
    audio = audio_io.downmix(audio)
    if args.seconds > 0:
      audio = audio[:int(args.seconds * sr)]
    labels = read_labels(csv, sr, args.seconds)
    name = os.path.splitext(os.path.basename(wav))[0]
    rows = {"sparse_jax": score_codec(codec, audio, sr, labels, args.min_gain_share, options)}
    if not args.no_anchors:
      rows["librosa_onsets"] = score_librosa(audio, sr, labels)
    if bp_model is not None:
      rows["basic_pitch"] = score_basic_pitch(bp_model, audio, sr, labels)
    rows["notes"] = {"labelled_notes": float(len(labels[0]))}
    per_clip[name] = rows
    print(f"[{i + 1}/{len(pairs)}] {name}: onset F1 {rows['sparse_jax']['onset_f1']:.2f}, "
          f"{rows['sparse_jax']['events_per_note']:.1f} events per note "
          f"({time.time() - started:.0f} s)", file=sys.stderr)
  overall = mean_rows(per_clip)
  os.makedirs(args.out, exist_ok=True)
  result = {"model": args.workdir or "shipped", "labels": dirs, "seconds": args.seconds,
            "clips": len(pairs), "min_gain_share": args.min_gain_share, "encode": options,
            "basic_pitch": bp_missing or "onnx",
            "pitch_source": "pitch control" if codec.has_pitch_control else "pyin",
            "overall": overall, "per_clip": per_clip}
  with open(os.path.join(args.out, "results.json"), "w") as f:
    json.dump(result, f, indent=1)
  text = table({k: v for k, v in overall.items() if k != "notes"})
  with open(os.path.join(args.out, "results.md"), "w") as f:
    f.write(text + "\n")
  print(text)
  if bp_missing:
    print(f"basic-pitch left out: {bp_missing}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
