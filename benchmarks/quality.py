r"""Quality at matched bitrate: the trained codec against Opus, MP3 and matching pursuit.

  python -m benchmarks.quality --workdir runs/quickstart
  python -m benchmarks.quality --workdir runs/musicnet --musicnet-root /data/musicnet --clips 16
  python -m benchmarks.quality --workdir W --quick            # 2 clips: a smoke run
  python -m benchmarks.quality --workdir W --real DIR [DIR ...] [--events 8,16,32] [--no-visqol]
      [--refine 20,100]

--real measures real recordings instead (see "Real recordings" below and the README): a fixed,
seeded subset of clips from any folders of wav/flac/ogg/mp3 files, our codec at several event
counts per window (a quality-vs-bitrate curve), Opus at 6, 8 and 12 kbit/s, MP3 at 8 and matching
pursuit at our bitrate, scored by spectral L1 explained (2048/256), log-mel, MR-STFT, SI-SDR and
ViSQOL; it writes results.md, results.json and one real_<metric>.png per metric in --out
(default benchmarks/results/real).  `--refine 20,100` adds rows for our codec at the largest event
count with encode-time refinement (`encode --refine N`); they are opt-in because on the 2-core
CPU they take far longer than the rest (see the README), and their "x realtime" column is the
seconds of encode + decode per second of audio.

For each held-out clip (`data.eval_clips` of the embedded classical set's test split, and of
MusicNet's test recordings when --musicnet-root is given; clips are one model window long unless
--seconds says otherwise, and longer clips go through the streaming codec), four codecs encode and
decode the whole clip:
  ours  `Codec.encode` -> `.sjx` bytes (8-bit vectors) -> `sjx.decode_bytes` -> `Codec.decode`;
  opus  Opus at about 6 kbit/s (its floor), through soundfile;
  mp3   MP3 at about 8 kbit/s (LAME's floor at 22050 Hz), through soundfile;
  mp    matching pursuit over a multi-scale Gabor dictionary with as many atoms per second as our
        codec has events (events per window / the window's half, where a window places its
        events), coded as quantised atoms (about 26 bits each, so far fewer bits than ours);
  mp_rate  the same with as many atoms as fit in our measured bitrate on that clip.
Columns (means over the clips):
  kbit/s        the coded stream: bytes without one-off file headers (our 55-byte `.sjx` header
                and CRC; Ogg's header pages; ID3 tags; MP's 118-bit header) * 8 / duration;
  file kbit/s   the whole file or byte string (for ours: len(sjx bytes) * 8 / duration);
  MR-STFT, log-mel, SI-SDR   `sparse_jax.metrics` on the whole clip;
  explained     1 - ||S(x) - S(y)||_1 / ||S(x)||_1 on the whole clip, S the codec's own |STFT|;
  removed       the per-step energy-removal curve on the first window, after all its events
                (ours: `evaluation.energy_curves`; MP: the same curves for matching pursuit run
                on the first window's first half with the same number of atoms as our events):
                "sum" = through the sum of the events' spectrograms (what the encoder removes),
                "mixed" = through the spectrogram of the summed audio (what a listener hears);
  x realtime    encode + decode time / audio duration (ours after a warm-up that compiles).
Writes results.md, results.json and results.png in --out and prints the table.
"""
import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

from benchmarks import machine
from sparse_jax.data import subset
from sparse_jax.errors import UserError

DEFAULT_WORKDIR = "runs/quickstart"
DEFAULT_OUT = os.path.join("benchmarks", "results", "quality")
OPUS_KBPS = 6.0
MP3_KBPS = 8.0
CODECS = ("ours", "opus", "mp3", "mp", "mp_rate")
LABELS = {"ours": "ours (sparse events)", "opus": f"Opus ~{OPUS_KBPS:g}k",
          "mp3": f"MP3 ~{MP3_KBPS:g}k", "mp": "matching pursuit, our events/s",
          "mp_rate": "matching pursuit, our kbit/s"}
# The STFT of the reported spectral L1 explained on real recordings (the paper model's own).
REPORTED_STFT = (2048, 256)
METRICS = ("kbps", "file_kbps", "mr_stft", "log_mel", "si_sdr", "explained", "realtime_factor")


# ------------------------------------------------------------------------------------------------
# The codecs on one clip.


def spectral_explained(ref_T, est_T, window: int, hop: int) -> float:
  """1 - ||S(ref) - S(est)||_1 / ||S(ref)||_1 with the codec's |STFT| (1 = same spectrogram)."""
  from sparse_jax import metrics
  return float(metrics.spectral_energy_curve(ref_T, np.asarray(est_T)[None], window, hop)[0])


def clip_metrics(ref_T, est_T, sample_rate: int, window: int, hop: int) -> dict:
  from sparse_jax import metrics
  ref_T, est_T = np.asarray(ref_T, np.float64), np.asarray(est_T, np.float64)
  return {"mr_stft": metrics.multi_resolution_stft_distance(ref_T, est_T),
          "log_mel": metrics.log_mel_distance(ref_T, est_T, sample_rate),
          "si_sdr": metrics.si_sdr(ref_T, est_T),
          "explained": spectral_explained(ref_T, est_T, window, hop)}


def first_window(clip_T: np.ndarray, n_samples: int) -> np.ndarray:
  out = np.zeros(n_samples, np.float32)
  out[:min(n_samples, clip_T.size)] = clip_T[:n_samples]
  return out


def run_ours(codec, clip_T: np.ndarray) -> dict:
  """Our codec through its `.sjx` bytes, and its removal curves on the first window."""
  from sparse_jax import evaluation
  from sparse_jax.codec import sjx
  m = codec.cfg.model
  seconds = clip_T.size / codec.sample_rate
  t = time.perf_counter()
  events, info = codec.encode(clip_T, return_info=True)
  data = sjx.encode_bytes(events, bits=8)
  decoded_T = codec.decode(sjx.decode_bytes(data, expected_model_id=codec.model_id))
  elapsed = time.perf_counter() - t
  # The first window's removal curves, from the encoder's own (unquantised) events: every step,
  # silent ones (gain 0, left out of the EventSet) as zero audio.
  n_steps = info.shares_WxS1.shape[1] - 1
  in_first = info.event_window_E == 0
  events_ExT = np.zeros((n_steps, codec.n_samples), np.float32)
  if in_first.any():
    rendered = codec.render(events.vectors[in_first], events.frames[in_first],
                            events.gains[in_first], events.offsets[in_first])
    events_ExT[info.event_step_E[in_first]] = rendered
  residual_l1_E = info.shares_WxS1[0, 1:] * info.initial_l1_W[0]
  curves = evaluation.energy_curves(first_window(clip_T, codec.n_samples), events_ExT,
                                    residual_l1_E, m.window, m.hop)
  payload = len(data) - sjx.HEADER_BYTES - sjx.CRC_BYTES
  return {"decoded": decoded_T, "kbps": payload * 8 / seconds / 1000,
          "file_kbps": len(data) * 8 / seconds / 1000, "realtime_factor": elapsed / seconds,
          "events_per_second": len(events) / seconds,
          "curves": {k: np.asarray(v, np.float64).tolist() for k, v in curves.items()}}


def run_classic(name: str, clip_T: np.ndarray, sample_rate: int, atoms_per_second: float) -> dict:
  from sparse_jax.baselines import classic_codecs, matching_pursuit
  t = time.perf_counter()
  if name == "opus":
    r = classic_codecs.opus_roundtrip(clip_T, sample_rate, OPUS_KBPS)
  elif name == "mp3":
    r = classic_codecs.mp3_roundtrip(clip_T, sample_rate, MP3_KBPS)
  else:
    r = matching_pursuit.mp_codec(clip_T, sample_rate, atoms_per_second=atoms_per_second)
  elapsed = time.perf_counter() - t
  seconds = clip_T.size / sample_rate
  out = {"decoded": r.decoded_T, "kbps": r.kbps, "file_kbps": r.file_kbps,
         "realtime_factor": elapsed / seconds}
  if name == "mp":
    out["events_per_second"] = round(atoms_per_second * seconds) / seconds
  return out


def spectral_residual_l1(window_T: np.ndarray, events_ExT: np.ndarray, window: int,
                         hop: int) -> np.ndarray:
  """||S - sum_{j<=k} |STFT(e_j)| ||_1 over the first-half frames, for k = 1..E: the residual the
  encoder sees, for any set of events (here matching pursuit's atoms)."""
  from sparse_jax import metrics
  half = (window_T.size // hop) // 2
  spec = metrics.stft_magnitude(window_T, window, hop)[:, :half]
  partial = np.zeros_like(spec)
  out = []
  for e_T in events_ExT:
    partial += metrics.stft_magnitude(e_T, window, hop)[:, :half]
    out.append(np.abs(spec - partial).sum())
  return np.asarray(out)


def mp_curves(clip_T: np.ndarray, model_cfg) -> dict:
  """Matching pursuit's removal curves on the first window, measured like ours.

  MP runs on the window's first half (where our encoder may place events) with as many atoms as
  our codec takes steps per window; each atom is rendered alone (cut to that half) and the curves
  use the same first-half spectrogram as `evaluation.energy_curves`.
  """
  from sparse_jax import evaluation
  from sparse_jax.baselines import matching_pursuit as mp
  n, half = model_cfg.n_samples, model_cfg.n_samples // 2
  window_T = first_window(clip_T, n)
  result = mp.matching_pursuit(window_T[:half].astype(np.float64), model_cfg.n_events)
  events_ExT = np.zeros((model_cfg.n_events, n), np.float32)
  for i in range(result.atoms.size):  # MP stops early only on an exactly explained signal.
    events_ExT[i, :half] = mp.render_atoms(result.atoms[i:i + 1], half)
  residual_l1_E = spectral_residual_l1(window_T, events_ExT, model_cfg.window, model_cfg.hop)
  curves = evaluation.energy_curves(window_T, events_ExT, residual_l1_E, model_cfg.window,
                                    model_cfg.hop)
  return {k: np.asarray(v, np.float64).tolist() for k, v in curves.items()}


# ------------------------------------------------------------------------------------------------
# One dataset.


def events_per_second(model_cfg) -> float:
  """Our codec's event rate: a window's events sit in its first half, and windows advance by
  half a window."""
  return model_cfg.n_events / (model_cfg.n_samples / 2 / model_cfg.sample_rate)


def evaluate_dataset(codec, name: str, data_cfg, n_clips: int, clip_samples: int,
                     log=print) -> dict:
  from sparse_jax import data
  m = codec.cfg.model
  source = data.make_source(data_cfg, sample_rate=m.sample_rate, split="test")
  clips = data.eval_clips(source, n_clips, clip_samples, seed=0)
  aps = events_per_second(m)
  log(f"{name}: {len(clips)} test clips of {clip_samples / m.sample_rate:.2f} s; matching pursuit "
      f"at {aps:.2f} atoms/s")
  # Compile the encoder and the renderer once, untimed.
  codec.encode(clips[0][:codec.n_samples])
  codec.render(np.zeros((1, m.event_dim), np.float32), np.zeros(1, np.int64),
               np.zeros(1, np.float32), np.zeros(1, np.float32))
  per_clip: dict[str, list] = {c: [] for c in CODECS}
  curves: dict[str, list] = {"ours": [], "mp": []}
  for i, clip_T in enumerate(clips):
    for c in CODECS:
      if c == "ours":
        r = run_ours(codec, clip_T)
      elif c == "mp_rate":  # Atoms scale the payload linearly: match our bitrate on this clip.
        rate = aps * per_clip["ours"][-1]["kbps"] / max(per_clip["mp"][-1]["kbps"], 1e-9)
        r = run_classic("mp", clip_T, m.sample_rate, rate)
      else:
        r = run_classic(c, clip_T, m.sample_rate, aps)
      row = {k: float(r[k]) for k in ("kbps", "file_kbps", "realtime_factor")}
      row.update(clip_metrics(clip_T, r["decoded"], m.sample_rate, m.window, m.hop))
      if "events_per_second" in r:
        row["events_per_second"] = float(r["events_per_second"])
      if c == "ours":
        curves["ours"].append(r["curves"])
      per_clip[c].append(row)
    curves["mp"].append(mp_curves(clip_T, m))
    log(f"  clip {i + 1}/{len(clips)}: " + ", ".join(
        f"{c} {per_clip[c][-1]['kbps']:.2f} kbit/s MR-STFT {per_clip[c][-1]['mr_stft']:.3f}"
        for c in CODECS))
  codecs: dict[str, dict] = {}
  for c in CODECS:
    keys = per_clip[c][0].keys()
    codecs[c] = {k: float(np.mean([row[k] for row in per_clip[c]])) for k in keys}
    codecs[c]["label"] = LABELS[c]
    codecs[c]["per_clip"] = per_clip[c]
  mean_curves = {c: {k: np.mean([cv[k] for cv in curves[c]], axis=0).tolist()
                     for k in curves[c][0]} for c in curves}
  for c in curves:
    codecs[c]["removed_sum"] = mean_curves[c]["sum_of_event_spectrograms"][-1]
    codecs[c]["removed_mixed"] = mean_curves[c]["spectrogram_of_summed_audio"][-1]
  return {"n_clips": int(len(clips)), "clip_seconds": clip_samples / m.sample_rate,
          "events_per_second": aps, "codecs": codecs, "curves": mean_curves}


# ------------------------------------------------------------------------------------------------
# Real recordings (--real DIR [DIR ...]).

REAL_OPUS_KBPS = (6.0, 8.0, 12.0)
REAL_OUT = os.path.join("benchmarks", "results", "real")
# Defaults of --real, sized to run in under 15 minutes on a 2-core CPU (see the README), and of
# --real --quick (a test).
# ViSQOL on whole clips by default (0): on 2-3 s excerpts it is unreliable (silence scored 3.69 of
# 5 against a 3.5 s clip).
REAL_CLIPS, REAL_SECONDS, REAL_EVENTS, REAL_VISQOL_SECONDS = 20, 8.0, "8,16,32", 0.0
REAL_QUICK = {"clips": 3, "seconds": 1.5, "events": "2,4", "visqol_seconds": 1.0}
REAL_MP3_KBPS = 8.0
# The metrics of the real-recording table and figures: key, label, higher is better.
REAL_METRICS = (("explained", "spectral L1 explained (2048/256)", True),
                ("log_mel", "log-mel distance", False),
                ("mr_stft", "MR-STFT distance", False),
                ("si_sdr", "SI-SDR (dB)", True),
                ("visqol", "ViSQOL MOS-LQO (audio mode)", True))
HIGHER_IS_BETTER = {key: higher for key, _, higher in REAL_METRICS}
# The headline figures: each gets a median and a worst clip, and `benchmarks.promote` judges by them.
REAL_HEADLINE = ("explained", "log_mel", "visqol")


# The fixed subset's rule lives in the library: the pretrained recipe's data keeps it out.
find_recordings = subset.find_recordings
choose_clips = subset.choose_clips
load_clip = subset.load_clip


def run_ours_at(codec, clip_T: np.ndarray, n_events: int, refine: int = 0,
                at_onsets: bool | None = None) -> dict:
  """Our codec at `n_events` per window (refined by `refine` steps; events at onsets only with
  `at_onsets`, `encode --at-onsets`), through 8-bit `.sjx` bytes."""
  from sparse_jax import api
  from sparse_jax.codec import sjx
  seconds = clip_T.size / codec.sample_rate
  t = time.perf_counter()
  events = api.encode(codec, clip_T, n_events=n_events, refine=refine, at_onsets=at_onsets)
  data = sjx.encode_bytes(events, bits=8)
  decoded_T = codec.decode(sjx.decode_bytes(data, expected_model_id=codec.model_id))
  elapsed = time.perf_counter() - t
  payload = len(data) - sjx.HEADER_BYTES - sjx.CRC_BYTES
  return {"decoded": decoded_T, "kbps": payload * 8 / seconds / 1000,
          "file_kbps": len(data) * 8 / seconds / 1000, "realtime_factor": elapsed / seconds,
          "events_per_second": len(events) / seconds}


def mp_at_bitrate(clip_T: np.ndarray, sample_rate: int, target_kbps: float) -> dict:
  """Matching pursuit with as many atoms as fit in `target_kbps` (payload), from one MP run.

  Greedy MP with n atoms is the first n atoms of a longer run, so one run with an upper bound
  (atoms cost >= 20 bits each) and a bisection over the prefix length give the largest atom
  count whose coded payload fits the target.
  """
  from sparse_jax.baselines import matching_pursuit as mp
  t = time.perf_counter()
  x_T = np.asarray(clip_T, np.float64)
  seconds = x_T.size / sample_rate
  budget_bits = target_kbps * 1000 * seconds
  atoms = mp.matching_pursuit(x_T, max(1, int(budget_bits / 20) + 1)).atoms
  header = mp.header_bits(3)
  payload = lambda n: len(mp.encode_atoms(atoms[:n], x_T.size)) * 8 - header
  if payload(1) > budget_bits:  # Not even one atom fits (our file held no event).
    return {"decoded": np.zeros_like(x_T), "kbps": 0.0, "file_kbps": 0.0,
            "realtime_factor": (time.perf_counter() - t) / seconds, "events_per_second": 0.0}
  lo, hi = 1, atoms.size  # payload grows with n: the largest n with payload(n) <= budget
  while lo < hi:
    mid = (lo + hi + 1) // 2
    lo, hi = (mid, hi) if payload(mid) <= budget_bits else (lo, mid - 1)
  data = mp.encode_atoms(atoms[:lo], x_T.size)
  decoded_atoms, length = mp.decode_atoms(data)
  return {"decoded": mp.render_atoms(decoded_atoms, length),
          "kbps": (len(data) * 8 - header) / seconds / 1000,
          "file_kbps": len(data) * 8 / seconds / 1000,
          "realtime_factor": (time.perf_counter() - t) / seconds,
          "events_per_second": lo / seconds}


def real_metrics(ref_T, est_T, sample_rate: int, visqol_seconds: float | None) -> dict:
  """The real-recording metrics of one decoded clip (ViSQOL on its first `visqol_seconds`)."""
  from sparse_jax import metrics
  ref_T, est_T = np.asarray(ref_T, np.float64), np.asarray(est_T, np.float64)
  out = {"explained": spectral_explained(ref_T, est_T, *REPORTED_STFT),
         "log_mel": metrics.log_mel_distance(ref_T, est_T, sample_rate),
         "mr_stft": metrics.multi_resolution_stft_distance(ref_T, est_T),
         "si_sdr": metrics.si_sdr(ref_T, est_T), "visqol": None}
  if visqol_seconds:
    n = min(ref_T.size, int(visqol_seconds * sample_rate))
    out["visqol"] = metrics.visqol(ref_T[:n], est_T[:n], sample_rate)
  return out


def real_codecs(event_counts, refine_steps=()) -> dict:
  """name -> label of every codec of the real-recording run, in table order."""
  labels = {f"ours_{e}": f"ours, {e} events/window" for e in event_counts}
  top = max(event_counts)
  labels.update({f"ours_{top}_r{n}": f"ours, {top} events/window, --refine {n}"
                 for n in refine_steps})
  labels.update({f"opus_{k:g}": f"Opus {k:g}k" for k in REAL_OPUS_KBPS})
  labels[f"mp3_{REAL_MP3_KBPS:g}"] = f"MP3 {REAL_MP3_KBPS:g}k"
  labels["mp_rate"] = f"matching pursuit at our bitrate ({max(event_counts)} events/window)"
  labels.update(REAL_BOUNDS)
  return labels


# Rows that bound every table: silence (what a score means when nothing is decoded) and the
# input itself at the model's rate, mono (the clips are scored at 22.05 kHz mono, so this row is
# each metric's best: the bandwidth and the channels no codec here can give back are outside
# what this benchmark measures).
REAL_BOUNDS = {"silence": "floor: silence", "input": "ceiling: the input at 22.05 kHz, mono"}


def _ours_setting(name: str) -> tuple:
  """(events per window, refine steps) of a codec name `ours_E` or `ours_E_rN`."""
  parts = name.split("_")
  return int(parts[1]), (int(parts[2][1:]) if len(parts) > 2 else 0)


def evaluate_real(codec, folders, n_clips: int, clip_seconds: float, event_counts,
                  visqol_seconds: float | None, log=print, refine_steps=(),
                  at_onsets: bool | None = None) -> dict:
  from sparse_jax.baselines import classic_codecs
  sr = codec.sample_rate
  clips = choose_clips(folders, n_clips, clip_seconds)
  if not clips:
    raise UserError(f"no readable wav/flac/ogg/mp3 files under {', '.join(folders)}; "
                    "pass folders that hold recordings")
  log(f"real recordings: {len(clips)} clips of up to {clip_seconds:g} s from "
      f"{', '.join(folders)}")
  labels = real_codecs(event_counts, refine_steps)
  # Compile the removal loop (one program per event count) and the renderer once, untimed (and a
  # refinement step; its other batch shapes compile on first use, a few seconds each).
  warm_T = 0.1 * np.sin(np.arange(codec.n_samples) * 0.05).astype(np.float32)
  from sparse_jax import api
  for e in event_counts:
    api.encode(codec, warm_T, n_events=e,
               refine=1 if refine_steps and e == max(event_counts) else 0)
  codec.render(np.zeros((1, codec.event_dim), np.float32), np.zeros(1, np.int64),
               np.ones(1, np.float32), np.zeros(1, np.float32))
  per_clip: dict[str, list] = {c: [] for c in labels}
  for i, clip in enumerate(clips):
    clip_T = load_clip(clip, sr)
    for name in labels:
      t = time.perf_counter()
      if name.startswith("ours_"):
        n_events, refine = _ours_setting(name)
        r = run_ours_at(codec, clip_T, n_events, refine, at_onsets=at_onsets)
      elif name.startswith("opus_"):
        r = vars(classic_codecs.opus_roundtrip(clip_T, sr, float(name.split("_")[1])))
      elif name.startswith("mp3_"):
        r = vars(classic_codecs.mp3_roundtrip(clip_T, sr, float(name.split("_")[1])))
      elif name in REAL_BOUNDS:
        r = {"decoded": np.zeros_like(clip_T) if name == "silence" else clip_T.copy(),
             "kbps": 0.0, "file_kbps": 0.0}
      else:
        r = mp_at_bitrate(clip_T, sr, per_clip[f"ours_{max(event_counts)}"][-1]["kbps"])
      elapsed = time.perf_counter() - t
      decoded = r["decoded"] if "decoded" in r else r["decoded_T"]
      row = {"kbps": float(r["kbps"]), "file_kbps": float(r["file_kbps"]),
             "realtime_factor": elapsed / (clip_T.size / sr),
             "events_per_second": float(r.get("events_per_second", 0.0))}
      row.update(real_metrics(clip_T, decoded, sr, visqol_seconds))
      # A bound's undefined figures (SI-SDR of silence, of the input itself) are left blank.
      row = {k: v if v is None or np.isfinite(v) else None for k, v in row.items()}
      per_clip[name].append(row)
    ours = per_clip[f"ours_{max(event_counts)}"][-1]
    refined = "".join(f", --refine {n} {per_clip[f'ours_{max(event_counts)}_r{n}'][-1]['explained']:+.3f}"
                      for n in refine_steps)
    log(f"  clip {i + 1}/{len(clips)} {clip['path']} ({clip['seconds']:.1f} s): ours "
        f"{ours['kbps']:.2f} kbit/s explained {ours['explained']:+.3f}{refined}, Opus 6k "
        f"explained {per_clip['opus_6'][-1]['explained']:+.3f}")
  codecs: dict[str, dict] = {}
  for name, label in labels.items():
    rows = per_clip[name]
    summary = {"label": label, "per_clip": rows}
    for key in rows[0]:
      values = [row[key] for row in rows if row[key] is not None]
      summary[key] = float(np.mean(values)) if values else None
      if key in REAL_HEADLINE:
        summary[f"{key}_median"] = float(np.median(values)) if values else None
        worst = min if HIGHER_IS_BETTER[key] else max
        summary[f"{key}_worst"] = worst(values) if values else None
    summary["explained_min"] = float(min(row["explained"] for row in rows))
    codecs[name] = summary
  return {"clips": clips, "clip_seconds": clip_seconds, "visqol_seconds": visqol_seconds,
          "event_counts": list(event_counts), "refine_steps": list(refine_steps),
          "at_onsets": at_onsets,
          "codecs": codecs}


def real_markdown(report: dict) -> str:
  d = report["real"]
  visqol = ("ViSQOL not measured" if not d["visqol_seconds"] else
            "ViSQOL on whole clips" if d["visqol_seconds"] >= d["clip_seconds"] else
            f"ViSQOL on the first {d['visqol_seconds']:g} s of each clip")
  lines = [f"Model: `{report['workdir']}` at step {report['step']} "
           f"({report['window_seconds']:.2f} s windows); machine: {report['machine']}.",
           f"Command: `{report['command']}` ({report['wall_s'] / 60:.1f} min).", "",
           f"{len(d['clips'])} clips of up to {d['clip_seconds']:g} s (means over clips; "
           f"{visqol}; spectral L1 explained on the 2048/256 |STFT|, its minimum over clips "
           "in the next column):", "",
           "| codec | kbit/s | file kbit/s | explained | min explained | log-mel | MR-STFT | "
           "SI-SDR dB | ViSQOL | x realtime |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in d["codecs"].values():
    lines.append(f"| {r['label']} | {r['kbps']:.2f} | {r['file_kbps']:.2f} | "
                 f"{100 * r['explained']:.1f} % | {100 * r['explained_min']:.1f} % | "
                 f"{r['log_mel']:.3f} | {r['mr_stft']:.3f} | {_f(r['si_sdr'], '.2f')} | "
                 f"{_f(r['visqol'], '.3f')} | {_f(r.get('realtime_factor'), '.3f')} |")
  lines += ["", "Median and worst clip of the headline figures:", "",
            "| codec | explained median / worst | log-mel median / worst | "
            "ViSQOL median / worst |", "|---|---|---|---|"]
  for r in d["codecs"].values():
    pct = lambda x: "" if x is None else f"{100 * x:.1f} %"
    lines.append(f"| {r['label']} | {pct(r['explained_median'])} / {pct(r['explained_worst'])} | "
                 f"{_f(r['log_mel_median'], '.3f')} / {_f(r['log_mel_worst'], '.3f')} | "
                 f"{_f(r['visqol_median'], '.3f')} / {_f(r['visqol_worst'], '.3f')} |")
  lines += ["", "Clips (folder, file, start s, seconds):", ""]
  lines += [f"- `{c['folder']}` `{c['path']}` {c['start_s']:.2f} {c['seconds']:.2f}"
            for c in d["clips"]]
  return "\n".join(lines) + "\n"


def real_plots(folder: str, report: dict) -> list:
  """One PNG per metric, quality against bitrate; returns the file names."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  d = report["real"]
  families = {"ours": ("C0", "o-"), "refined": ("C4", "*"), "opus": ("C1", "s-"),
              "mp3": ("C2", "^"), "mp_rate": ("C3", "D")}
  family_of = lambda name: ("mp_rate" if name == "mp_rate" else
                            "refined" if name.startswith("ours_") and "_r" in name else
                            name.split("_")[0])
  names = []
  for key, title, higher in REAL_METRICS:
    if all(r[key] is None for r in d["codecs"].values()):
      continue
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for family, (colour, style) in families.items():
      rows = [r for name, r in d["codecs"].items() if family_of(name) == family]
      if not rows:
        continue
      rows.sort(key=lambda r: r["kbps"])
      label = {"ours": "ours (--events " + ",".join(map(str, d["event_counts"])) + ")",
               "refined": "ours, --refine " + ",".join(map(str, d.get("refine_steps", []))),
               "opus": "Opus 6/8/12k"}.get(family, rows[0]["label"])
      ax.plot([r["kbps"] for r in rows], [r[key] for r in rows], style, color=colour,
              label=label)
    for name, style in (("silence", ":"), ("input", "--")):  # the bounds, as lines
      value = d["codecs"].get(name, {}).get(key)
      if value is not None:
        ax.axhline(value, color="grey", linestyle=style, label=d["codecs"][name]["label"])
    ax.set_xlabel("kbit/s (coded payload)")
    ax.set_ylabel(title + (" (higher better)" if higher else " (lower better)"))
    ax.set_title(f"{title}: {len(d['clips'])} real clips")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = f"real_{key}.png"
    write_atomic(os.path.join(folder, name),
                 lambda tmp, fig=fig: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    names.append(name)
  return names


# ------------------------------------------------------------------------------------------------
# Output.


def write_atomic(path: str, write) -> None:
  """Calls write(tmp_path), then renames: a reader never sees a half-written file."""
  from sparse_jax import files
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with files.atomic_output(path) as tmp:
    write(tmp)


def _f(x, fmt: str) -> str:
  return "-" if x is None else format(x, fmt)


def markdown(report: dict) -> str:
  lines = [f"Model: `{report['workdir']}` at step {report['step']} "
           f"({report['n_events']} events per {report['window_seconds']:.2f} s window, "
           f"{report['events_per_second']:.2f} events/s); machine: {report['machine']}.",
           f"Command: `{report['command']}`", ""]
  for name, d in report["datasets"].items():
    lines += [f"**{name}** test split: {d['n_clips']} clips of {d['clip_seconds']:.2f} s (means).",
              "",
              "| codec | kbit/s | file kbit/s | MR-STFT (lower better) | log-mel (lower better) | "
              "SI-SDR dB | spectral L1 explained | removed after all events: sum / mixed | "
              "x realtime |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in CODECS:
      r = d["codecs"][c]
      removed = (f"{100 * r['removed_sum']:.1f} % / {100 * r['removed_mixed']:.1f} %"
                 if "removed_sum" in r else "-")
      lines.append(f"| {r['label']} | {r['kbps']:.2f} | {r['file_kbps']:.2f} | "
                   f"{r['mr_stft']:.3f} | {r['log_mel']:.3f} | {r['si_sdr']:.2f} | "
                   f"{100 * r['explained']:.1f} % | {removed} | {r['realtime_factor']:.3f} |")
    lines.append("")
  return "\n".join(lines)


def plot(path: str, report: dict) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = list(report["datasets"])
  panels = (("kbps", "kbit/s"), ("mr_stft", "MR-STFT (lower better)"),
            ("log_mel", "log-mel (lower better)"), ("si_sdr", "SI-SDR dB (higher better)"))
  fig, axes = plt.subplots(len(names), 1 + len(panels), figsize=(19, 4.2 * len(names)),
                           squeeze=False, gridspec_kw={"width_ratios": [2.2] + [1] * len(panels)})
  colours = {"ours": "C0", "opus": "C1", "mp3": "C2", "mp": "C3", "mp_rate": "C4"}
  for row, name in zip(axes, names):
    d = report["datasets"][name]
    ax = row[0]
    for c in ("ours", "mp"):
      for key, style in (("sum_of_event_spectrograms", "-"), ("spectrogram_of_summed_audio", "--")):
        y = 100 * np.asarray(d["curves"][c][key])
        ax.plot(np.arange(1, y.size + 1), y, style, color=colours[c],
                label=f"{LABELS[c]}: {'sum of spectrograms' if style == '-' else 'mixed audio'}")
    ax.set_xlabel("events / atoms in the first window")
    ax.set_ylabel("first-half spectral L1 removed (%)")
    ax.set_title(f"{name}: energy removal per step ({d['n_clips']} clips)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    for ax, (key, title) in zip(row[1:], panels):
      values = [d["codecs"][c][key] for c in CODECS]
      ax.bar(range(len(CODECS)), values, color=[colours[c] for c in CODECS])
      ax.set_xticks(range(len(CODECS)), [c for c in CODECS])
      ax.set_title(title, fontsize=10)
      ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  plt.close(fig)


# ------------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                 help=f"a training run's workdir or an exported generator .npz (default "
                      f"{DEFAULT_WORKDIR})")
  p.add_argument("--clips", type=int, default=None,
                 help=f"held-out clips (default 8; 2 --quick); with --real {REAL_CLIPS} "
                 f"({REAL_QUICK['clips']} --quick)")
  p.add_argument("--seconds", type=float, default=None,
                 help=f"clip length (default: one model window; with --real {REAL_SECONDS:g} s)")
  p.add_argument("--musicnet-root", default="", help="also evaluate MusicNet's test recordings")
  p.add_argument("--real", nargs="+", metavar="DIR", default=None,
                 help="instead, a fixed subset of the recordings in these folders (recursive; "
                 "wav, flac, ogg, mp3; any rate and channels); folders take turns")
  p.add_argument("--events", default=None,
                 help=f"with --real: events per window of our codec, a comma list (default "
                 f"{REAL_EVENTS}): the quality-vs-bitrate curve")
  p.add_argument("--refine", default="",
                 help="with --real: also our codec at the largest --events with encode-time "
                      "refinement of these step counts, a comma list (e.g. 20,100; opt-in: slow)")
  p.add_argument("--no-visqol", action="store_true", help="with --real: skip ViSQOL (slow)")
  p.add_argument("--at-onsets", action="store_true",
                 help="with --real: our events start only at detected onsets (encode --at-onsets)")
  p.add_argument("--visqol-seconds", type=float, default=None,
                 help="with --real: ViSQOL on each clip's first seconds (default 0: the "
                      "whole clip)")
  p.add_argument("--out", default=None,
                 help=f"output folder (default {DEFAULT_OUT}; with --real {REAL_OUT})")
  p.add_argument("--quick", action="store_true", help="smoke run: 2 clips (--real: 3 short ones)")
  args = p.parse_args(argv)
  real_defaults = REAL_QUICK if args.quick else {
      "clips": REAL_CLIPS, "seconds": REAL_SECONDS, "events": REAL_EVENTS,
      "visqol_seconds": REAL_VISQOL_SECONDS}
  if args.real is None:
    for flag, value in (("--events", args.events), ("--visqol-seconds", args.visqol_seconds),
                        ("--refine", args.refine or None), ("--at-onsets", args.at_onsets or None)):
      if value is not None:
        p.error(f"{flag} goes with --real")
  else:
    for name, value in real_defaults.items():
      if getattr(args, name) is None:
        setattr(args, name, value)
    try:
      args.event_counts = sorted({int(e) for e in str(args.events).split(",") if e.strip()})
    except ValueError:
      p.error(f"--events must be a comma list of whole numbers, got {args.events!r}")
    if not args.event_counts or min(args.event_counts) < 1:
      p.error(f"--events must list counts of at least 1, got {args.events!r}")
    try:
      args.refine_steps = sorted({int(n) for n in args.refine.split(",") if n.strip()})
    except ValueError:
      p.error(f"--refine must be a comma list of whole numbers, got {args.refine!r}")
    if args.refine_steps and min(args.refine_steps) < 1:
      p.error(f"--refine must list step counts of at least 1, got {args.refine!r}")
    if args.visqol_seconds < 0:
      p.error("--visqol-seconds must be 0 or more")
    for folder in args.real:
      if not os.path.isdir(folder):
        p.error(f"--real {folder}: no such folder; pass folders of recordings")
  if args.out is None:
    args.out = REAL_OUT if args.real else DEFAULT_OUT
  if args.clips is None:
    args.clips = 2 if args.quick else 8
  if args.clips < 1:
    p.error("--clips must be at least 1")
  if args.seconds is not None and not args.seconds > 0:
    p.error("--seconds must be positive")
  return args


def run_real(args, argv) -> dict:
  from sparse_jax import api, metrics
  start = time.perf_counter()
  log = lambda s: print(s, file=sys.stderr, flush=True)
  codec = api.load_codec(args.workdir)
  visqol_seconds = None
  if not args.no_visqol:
    missing = metrics.visqol_missing()
    if missing:
      log(f"ViSQOL skipped: {missing}")
    else:
      visqol_seconds = args.visqol_seconds or args.seconds
  m = codec.cfg.model
  report = {
      "workdir": args.workdir, "step": codec.step, "model_id": codec.model_id.hex(),
      "window_seconds": m.n_samples / m.sample_rate, "sample_rate": int(m.sample_rate),
      "machine": machine.one_line(), "command": "python -m benchmarks.quality " + " ".join(argv),
      "date": datetime.date.today().isoformat(),
      "real": evaluate_real(codec, args.real, args.clips, args.seconds, args.event_counts,
                            visqol_seconds, log, args.refine_steps,
                            True if args.at_onsets else None)}
  report["wall_s"] = time.perf_counter() - start
  return report


def run(args, argv) -> dict:
  import ml_collections

  from sparse_jax import api
  if args.real:
    return run_real(args, argv)
  start = time.perf_counter()
  codec = api.load_codec(args.workdir)
  cfg = codec.cfg
  m = cfg.model
  clip_samples = m.n_samples if args.seconds is None else int(round(args.seconds * m.sample_rate))
  datasets = {}
  if cfg.data.name == "classical":
    datasets["classical (embedded)"] = cfg.data
  else:
    datasets["classical (embedded)"] = ml_collections.ConfigDict(
        {"name": "classical", "root": "", "cache_dir": cfg.data.get("cache_dir", "")})
  if args.musicnet_root:
    datasets["MusicNet"] = ml_collections.ConfigDict(
        {"name": "musicnet", "root": args.musicnet_root,
         "cache_dir": cfg.data.get("cache_dir", "")})
  log = lambda s: print(s, file=sys.stderr, flush=True)
  report = {
      "workdir": args.workdir, "step": codec.step, "model_id": codec.model_id.hex(),
      "n_events": int(m.n_events), "window_seconds": m.n_samples / m.sample_rate,
      "sample_rate": int(m.sample_rate), "events_per_second": events_per_second(m),
      "machine": machine.one_line(),
      "command": "python -m benchmarks.quality " + " ".join(argv),
      "date": datetime.date.today().isoformat(),
      "definitions": __doc__.split("Columns (means over the clips):\n", 1)[1].split(
          "Writes results")[0],
      "datasets": {name: evaluate_dataset(codec, name, d, args.clips, clip_samples, log)
                   for name, d in datasets.items()},
  }
  report["wall_s"] = time.perf_counter() - start
  return report


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  try:
    report = run(args, argv)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  table = real_markdown(report) if args.real else markdown(report)

  def write_text(text):
    def write(tmp):
      with open(tmp, "w") as f:
        f.write(text)
    return write

  write_atomic(os.path.join(args.out, "results.json"), write_text(json.dumps(report, indent=2)))
  write_atomic(os.path.join(args.out, "results.md"), write_text(table))
  if args.real:
    figures = real_plots(args.out, report)
  else:
    write_atomic(os.path.join(args.out, "results.png"), lambda tmp: plot(tmp, report))
    figures = ["results.png"]
  print(table)
  print(f"wrote results.md, results.json and {', '.join(figures)} in {args.out} "
        f"({report['wall_s']:.0f} s)", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
