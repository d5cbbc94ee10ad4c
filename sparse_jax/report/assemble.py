"""The HTML report of what the codec does to one recording: a folder (the paper's figures).

`write_report(audio_T, codec, out_dir)` writes the folder `out_dir`: `index.html` and beside it
the few files it shows (no server, no external URLs or libraries; a few lines of vanilla inline
JS).  Open index.html in a browser; copy the whole folder to share it.

- audio players (MP3, which every browser plays, about 40 kbit/s): the original, the
  reconstruction, and the paper's three edit experiments (random vectors at the original times,
  the original vectors at random times, one shared perturbation of every vector); a track whose
  peak would clip is scaled below full scale, and the page says by how much;
- the event timeline in two tabs, inline SVG scatters over x = event time (s): a piano roll (y =
  each event's pitch heard from it alone, `sparse_jax.notes`; size = gain; colour = timbre
  cluster, with a legend) and the paper's view (y = a 1-D t-SNE of the event vectors, openTSNE,
  each dimension min-max normalised; colour = a random projection of them to RGB).  Clicking a
  point plays that event's own sound: the clips of the loudest
  `MAX_CLIPS` events sit end to end in ONE file (`events.mp3`, at most `MAX_CLIP_S` each), and a
  point carries its clip's start and end (512 events of 12 s were 512 WAV files and 29 MB);
- for the window with the most energy: the |residual| spectrogram at a few removal steps (shared
  dB scale, one colour bar), and its event vectors as an image;
- the energy removed after each removal step, for every window (share of the window's first-half
  spectral L1), by the events the file holds at their final gains.

The whole input is covered by default; `max_samples` cuts it.  This module encodes, writes the
audio and assembles the folder; the timeline is `timeline.py`, the figures `figures.py` and the
HTML `page.py`.
"""
import os
import shutil
import sys
import time
import uuid

import numpy as np

from sparse_jax import files, metrics, representation
from sparse_jax.codec import edit, sjx
from sparse_jax.errors import UserError
from sparse_jax.report import figures, page, timeline

AUDIO_FILES = (
    ("original.mp3", "Original"),
    ("reconstruction.mp3", "Reconstruction"),
    ("random_vectors.mp3", "Random event vectors, original times"),
    ("random_times.mp3", "Original event vectors, random times"),
    ("perturbed.mp3", "Every vector moved by one shared random offset"),
)
FIGURES = ("residual_steps.png", "energy_removed.png", "event_vectors.png")
# The event clips: how many (the loudest events), how long each at most, the silence between.
TSNE_ABOUT = ("Each point is an event: x its time, y a 1-D t-SNE of its vector (each dimension "
              "min-max normalised; nearby points have similar vectors), colour a random "
              "projection of the vector to RGB.  Click a large point to hear that event alone "
              "(peak-normalised).")
PIANO_ROLL_ABOUT = ("Each point is an event: x its time, y its pitch as heard from the event "
                    "alone (pYIN; events with no clear pitch on the bottom row), size its gain, "
                    "colour its timbre (clusters of similar vectors).  Click a large point to "
                    "hear that event alone (peak-normalised).")
MAX_CLIPS = 160
MAX_CLIP_S = 0.4
CLIP_GAP_S = 0.1
# A player track whose peak is above this is scaled down to it (MP3 decoders clip at 1).
PLAYER_PEAK = 0.99


# ------------------------------------------------------------------------------------------------
# Audio.


def _write_mp3(path, audio_T, sample_rate):
  """An MP3 player track, scaled below full scale if it would clip; returns the scale (1: none)."""
  import soundfile as sf
  audio = np.asarray(audio_T, np.float32)
  peak = float(np.abs(audio).max()) if audio.size else 0.0
  scale = PLAYER_PEAK / peak if peak > PLAYER_PEAK else 1.0
  with files.atomic_output(path) as tmp:
    sf.write(tmp, audio * np.float32(scale), int(sample_rate), format="MP3")
  return scale


def _event_clip(audio_T, sample_rate, max_len):
  """An event's own sound: trimmed after it decays below -60 dB (at most `max_len` samples, with
  a 10 ms fade where that cuts it) and peak-normalised to 0.9."""
  audio_T = np.asarray(audio_T, np.float64)
  peak = np.abs(audio_T).max() if audio_T.size else 0.0
  if peak <= 0:
    return np.zeros(int(0.05 * sample_rate), np.float32)
  loud = np.flatnonzero(np.abs(audio_T) > 1e-3 * peak)
  end = min(max(int(loud[-1]) + 1, int(0.05 * sample_rate)), len(audio_T))
  clip = 0.9 * audio_T[:min(end, max_len)] / peak
  if end > max_len:
    fade = min(int(0.01 * sample_rate), len(clip))
    clip[len(clip) - fade:] *= np.linspace(1, 0, fade)
  return clip.astype(np.float32)


def _residuals_after_steps(trace, n_steps: int, half: int):
  """A window's first-half residual |STFT| (F, H) before step 1 and after each of `n_steps`
  steps, less the spectra of the events the file keeps from those steps, at their final gains."""
  residual_FxH = trace.spec_in_FxN[:, :half].astype(np.float64)
  yield residual_FxH.copy()
  for step in range(n_steps):
    residual_FxH = residual_FxH - trace.event_specs_KxFxN[trace.steps_K == step][:, :, :half].sum(0)
    yield residual_FxH.copy()


def written_shares(trace, half: int) -> np.ndarray:
  """The window's first-half residual L1 as a share of its input's, before step 1 and after each
  step up to its last kept event (all 0 for a silent window, as `EncodeInfo.shares_WxS1`)."""
  l1 = float(np.abs(trace.spec_in_FxN[:, :half]).sum())
  if l1 == 0:
    return np.zeros(1)
  n_steps = int(trace.steps_K.max()) + 1 if len(trace.steps_K) else 0
  return np.array([np.abs(r).sum() / l1 for r in _residuals_after_steps(trace, n_steps, half)])


def _residual_steps(kept):
  """The removal steps the residual view shows: the input, the first step, and a few after."""
  return sorted({0, min(1, kept), kept // 4, kept // 2, kept})


def _render_clips(codec, events, chosen):
  """Renders every event alone (window start, its gain, no fine shift), in batches.

  Returns ({index: clip} for the `chosen` events, the spectral centroid of every event in Hz):
  only the clips that go into events.mp3 are kept, so memory stays at one batch.
  """
  from sparse_jax.codec import runtime
  clips, centroids = {}, np.full(len(events), np.nan)
  max_len = min(codec.n_samples // 2, int(MAX_CLIP_S * codec.sample_rate))
  for lo in range(0, len(events), runtime.RENDER_BATCH):
    hi = min(lo + runtime.RENDER_BATCH, len(events))
    audio = codec.render(events.vectors[lo:hi], np.zeros(hi - lo, np.int32), events.gains[lo:hi],
                         np.zeros(hi - lo, np.float32))
    centroids[lo:hi] = representation.spectral_centroids_hz(audio, codec.sample_rate)
    for i in range(lo, hi):
      if i in chosen:
        clips[i] = _event_clip(audio[i - lo], codec.sample_rate, max_len)
  return clips, centroids


def _piano_roll(codec, events, normalised_ExD, duration, spans, seed):
  """The piano-roll view's SVG (UserError when the notes extra is missing)."""
  from sparse_jax import notes as notes_lib
  read = notes_lib.read_notes(codec, events)
  y_E, ticks = timeline.pitch_axis(read.midi_pitches)
  cluster_E = timeline.timbre_clusters(normalised_ExD, seed=seed)
  counts = np.bincount(cluster_E, minlength=len(timeline.CLUSTER_RGB))
  legend = [(timeline.CLUSTER_RGB[c], f"timbre {c + 1} ({counts[c]} events)")
            for c in range(len(counts)) if counts[c]]
  names = [timeline.note_name(m) if np.isfinite(m) else "no pitch" for m in read.midi_pitches]
  return timeline.svg_scatter(
      events.times_seconds, y_E, np.asarray(timeline.CLUSTER_RGB)[cluster_E], events.gains,
      duration, spans, y_label="pitch", y_note="", y_ticks=ticks, sized_by_gain=True,
      legend=legend, labels_E=[f"{n}, timbre {c + 1}" for n, c in zip(names, cluster_E)])


def _sprite(clips, sample_rate):
  """The clips end to end with silence between: (audio, {index: (start s, end s)})."""
  gap = np.zeros(int(CLIP_GAP_S * sample_rate), np.float32)
  parts, spans, at = [gap], {}, gap.size
  for i in sorted(clips):
    spans[i] = (at / sample_rate, (at + clips[i].size) / sample_rate)
    parts += [clips[i], gap]
    at += clips[i].size + gap.size
  return np.concatenate(parts), spans


def _refine_rows(audio_T, plain_T, refined_T, r):
  """Summary rows comparing the plain and the refined reconstruction (RefineInfo `r`)."""
  explained = lambda y_T: 1 - (np.abs(metrics.stft_magnitude(audio_T) - metrics.stft_magnitude(y_T)
                                      ).sum() / max(metrics.stft_magnitude(audio_T).sum(), 1e-30))
  kept = ("none: the whole file was worse refined, so the plain encode was kept" if r.fell_back
          else f"{int(r.refined_W.sum())} of {len(r.refined_W)} windows")
  return [
      ("refinement", f"{r.steps} Adam steps per window, {r.seconds:.1f} s; refined events kept "
                     f"in {kept}"),
      ("spectral L1 explained (2048/256): plain / refined",
       f"{100 * explained(plain_T):.1f}% / {100 * explained(refined_T):.1f}%"),
  ]


def write_report(audio_T, codec, out_dir, seed: int = 0, max_samples: int | None = None,
                 perturb_scale: float | None = None, source_name: str = "input",
                 progress: bool = False, refine: int = 0) -> str:
  """Encodes, decodes and edits `audio_T` and writes the report folder.

  Args:
    audio_T: mono audio at the codec's sample rate.
    codec: a `runtime.Codec`.
    out_dir: the report folder (created; an existing one is replaced once the new one is complete).
    seed: seed of the edit experiments, the t-SNE and the colour projection.
    max_samples: use at most this many samples (default: all of them).
    perturb_scale: length of the shared perturbation (default a quarter of the mean vector norm).
    source_name: what to call the input on the page.
    progress: say each stage on stderr (and draw the encoder's progress bar).
    refine: encode-time refinement steps (`encode --refine N`); with N > 0 the page plays the
      refined reconstruction beside the plain one, and shows the refined events.

  Returns:
    The path of index.html.
  """
  say = (lambda text: print(f"report: {text}", file=sys.stderr, flush=True)) if progress else (
      lambda text: None)
  audio_T = np.asarray(audio_T, np.float32).reshape(-1)
  total = audio_T.size
  if max_samples:
    audio_T = audio_T[:max_samples]
  sr = codec.sample_rate
  duration = audio_T.size / sr
  out_dir = os.path.abspath(out_dir)
  parent = os.path.dirname(out_dir)
  if not os.path.isdir(parent):
    raise UserError(f"{out_dir}: its parent folder {parent} does not exist; create it")

  # The encode, keeping the trace of the window with the most energy (its input's first-half
  # L1) for the per-step figures: one window in memory, whatever the file's length.
  # Every window's removal curve is taken from its trace too: what the file holds (the kept
  # events at their refit gains), not the model's loop before the refit, which can end below 0.
  half = codec.half
  best: dict = {"l1": -1.0}
  written_curves = {}

  def hook(trace):
    l1 = float(np.abs(trace.spec_in_FxN[:, :half]).sum())
    written_curves[trace.w] = written_shares(trace, half)
    if l1 > best["l1"]:
      best.update(l1=l1, trace=trace)

  n_windows = codec.windows_for(audio_T.size)[1]
  say(f"encoding {duration:.1f} s ({n_windows} windows)")
  start = time.time()
  from sparse_jax import api
  events, info = api.encode(codec, audio_T, return_info=True, window_hook=hook,
                            progress=progress, refine=refine)
  encode_seconds = time.time() - start
  say(f"{len(events)} events; decoding the reconstruction and 3 edits")
  recon = codec.decode(events, progress=progress)
  audio_files: tuple = AUDIO_FILES
  if info.refine is not None:
    # The plain encode's reconstruction first, the refined one beside it (the events shown below
    # are the refined ones: what `encode --refine N` writes).
    plain_recon = codec.decode(info.refine.plain_events)
    recons = {"reconstruction.mp3": plain_recon, "reconstruction_refined.mp3": recon}
    audio_files = (AUDIO_FILES[:2] + ((
        "reconstruction_refined.mp3", f"Reconstruction, refined (--refine {refine})"),)
                   + AUDIO_FILES[2:])
  else:
    recons = {"reconstruction.mp3": recon}

  rng = np.random.default_rng(seed)
  norms = np.linalg.norm(events.vectors, axis=1) if len(events) else np.zeros(1)
  scale = perturb_scale if perturb_scale is not None else 0.25 * float(norms.mean() or 1.0)
  edits = {
      "random_vectors.mp3": edit.random_vectors(events, rng),
      "random_times.mp3": edit.random_times(events, rng),
      "perturbed.mp3": edit.perturb(events, scale, rng),
  }

  tmp_dir = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp-{uuid.uuid4().hex[:8]}")
  os.makedirs(tmp_dir)
  try:
    notes = []
    scaled = {}
    for name, audio in (("original.mp3", audio_T),) + tuple(recons.items()):
      scaled[name] = _write_mp3(os.path.join(tmp_dir, name), audio, sr)
    for name, edited in edits.items():
      scaled[name] = _write_mp3(os.path.join(tmp_dir, name), codec.decode(edited), sr)
    titles = dict(audio_files)
    for name, factor in scaled.items():
      if factor < 1:
        notes.append(f"{titles[name]}: scaled by {factor:.3f} to play without clipping.")

    # Each event's own sound; the loudest MAX_CLIPS of them go into one file, events.mp3.
    audible = np.flatnonzero(events.gains > 0)
    chosen = set(audible[np.argsort(-events.gains[audible], kind="stable")][:MAX_CLIPS].tolist())
    say(f"rendering the {len(events)} events alone ({len(chosen)} clips)")
    clips, centroids = _render_clips(codec, events, chosen)
    sprite, spans = _sprite(clips, sr)
    _write_mp3(os.path.join(tmp_dir, "events.mp3"), sprite, sr)
    if len(audible) > len(chosen):
      notes.append(f"Only the {len(chosen)} loudest of the {len(audible)} audible events have a "
                   "clip to play (the large points of the timeline).")

    # Timelines: the piano roll (when the notes extra is installed), then the t-SNE view.
    say(f"t-SNE of {len(events)} vectors")
    normalised = timeline.minmax_normalise(events.vectors)
    views = [("t-SNE", TSNE_ABOUT, timeline.svg_scatter(
        events.times_seconds, timeline.tsne_1d(normalised, seed=seed),
        timeline.random_rgb(normalised, seed=seed), events.gains, duration, spans))]
    try:
      say(f"the pitch of {len(events)} events")
      views.insert(0, ("Piano roll", PIANO_ROLL_ABOUT,
                       _piano_roll(codec, events, normalised, duration, spans, seed)))
    except UserError as e:  # librosa or mido missing: the t-SNE view alone, and why
      notes.append(f"No piano roll: {e}")

    # The chosen window, step by step: its input less the spectra of the events the encoder kept
    # from each step on (the encoder's own spectra, at the gains the file holds).
    say("figures")
    trace = best["trace"]
    w = trace.w
    t0 = w * half * codec.hop / sr
    t1 = t0 + codec.n_samples / sr / 2
    window_label = f"window {w + 1} of {len(info.kept_W)}, {t0:.2f}-{t1:.2f} s"
    kept = int(info.kept_W[w])
    residuals_SxFxH, labels, shown = [], [], _residual_steps(kept)
    for step, residual_FxH in enumerate(_residuals_after_steps(trace, kept, half)):
      if step in shown:
        residuals_SxFxH.append(residual_FxH)
        labels.append("input" if step == 0 else f"after step {step}")
    plain = " (the plain encode, before refinement)" if info.refine is not None else ""
    figures.residual_png(os.path.join(tmp_dir, "residual_steps.png"), residuals_SxFxH, labels, sr,
                         codec.hop, f"|residual| of the first half of {window_label} (the window "
                         f"with the most energy){plain}")
    # Each curve stops at its last kept event: held flat to the loop's step count.
    n_points = info.shares_WxS1.shape[1]
    written_WxS1 = np.stack([np.pad(written_curves[i], (0, n_points - len(written_curves[i])),
                                    mode="edge") for i in range(len(info.kept_W))])
    figures.energy_png(os.path.join(tmp_dir, "energy_removed.png"), written_WxS1, info.kept_W,
                       w, window_label)
    sel = np.flatnonzero(info.event_window_E == w)
    figures.vectors_png(os.path.join(tmp_dir, "event_vectors.png"), events.vectors[sel],
                        f"event vectors of {window_label} ({len(sel)} events x "
                        f"{events.event_dim} dimensions)")

    mrstft = (metrics.multi_resolution_stft_distance(audio_T, recon)
              if np.any(audio_T) and np.any(recon) else float("nan"))
    removed = 1 - written_WxS1[w, kept]
    summary = [
        ("input", source_name),
        ("duration", f"{duration:.2f} s of {total / sr:.2f} s (--max-seconds)"
         if total > audio_T.size else f"{duration:.2f} s"),
        ("events", f"{len(events)} in {len(info.kept_W)} windows "
                   f"(up to {events.events_per_window} per window)"),
        ("bitrate (8-bit .sjx)", f"{sjx.bitrate_kbps(events, bits=8):.2f} kbit/s"),
        ("model", f"{events.model_id.hex()} ({codec.n_samples}-sample window, hop {codec.hop})"),
        ("encode time", f"{encode_seconds:.2f} s (real-time factor "
                        f"{encode_seconds / duration:.3f}; includes compilation on first use)"),
        (f"energy removed in {window_label}", f"{100 * removed:.1f}% of the first-half L1"),
        ("MR-STFT distance (original vs reconstruction)", f"{mrstft:.3f}"),
        ("perturbation length", f"{scale:.4g} (seed {seed})"),
    ]
    if info.refine is not None:
      summary += _refine_rows(audio_T, recons["reconstruction.mp3"], recon, info.refine)
    # Representation health (sparse_jax/representation.py): are the events one sound at many
    # levels, or do they differ?  The centroids come from each event's own sound, rendered above
    # batch by batch (summarize would need every event's audio in memory at once).
    health = representation.summarize(
        events.vectors, events.frames - info.event_window_E * codec.half, events.gains,
        windows_E=info.event_window_E)
    if "effective_rank" in health:
      sounding = centroids[(events.gains > 0) & np.isfinite(centroids) & (centroids > 0)]
      spread = float(np.std(np.log2(sounding))) if len(sounding) else 0.0
      summary += [
          ("event vectors: effective rank", f"{health['effective_rank']:.2f} of "
                                            f"{events.event_dim} dimensions"),
          ("event vectors: mean |cosine|", f"{health['mean_abs_cosine']:.3f} (1: one direction)"),
          (f"events in a window's first {representation.FIRST_FRAMES} frames",
           f"{100 * health['first_frames_share']:.1f}%"),
          ("events on a frame an earlier event of their window took",
           f"{100 * health['stacked_share']:.1f}%"),
          ("spread of the events' spectral centroids", f"{spread:.2f} octaves"),
      ]
    if total > audio_T.size:
      notes.append(f"Only the first {duration:.2f} s of the input's {total / sr:.2f} s are "
                   "shown (--max-seconds).")
    with open(os.path.join(tmp_dir, "index.html"), "w") as f:
      f.write(page.page(summary, notes, views, window_label, audio_files))
    files.replace_folder(tmp_dir, out_dir, "the report")
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return os.path.join(out_dir, "index.html")
