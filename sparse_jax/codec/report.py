"""The HTML report of what the codec does to one recording: a folder (the paper's figures).

`write_report(audio_T, codec, out_dir)` writes the folder `out_dir`: `index.html` and beside it
the few files it shows (no server, no external URLs or libraries; a few lines of vanilla inline
JS).  Open index.html in a browser; copy the whole folder to share it.

- audio players (MP3, which every browser plays, about 40 kbit/s): the original, the
  reconstruction, and the paper's three edit experiments (random vectors at the original times,
  the original vectors at random times, one shared perturbation of every vector); a track whose
  peak would clip is scaled below full scale, and the page says by how much;
- the event timeline: x = event time (s), y = a 1-D t-SNE of the event vectors (openTSNE; each
  dimension min-max normalised), colour = a random 32 -> 3 projection of them to RGB, as an inline
  SVG scatter.  Clicking a point plays that event's own sound: the clips of the loudest
  `MAX_CLIPS` events sit end to end in ONE file (`events.mp3`, at most `MAX_CLIP_S` each), and a
  point carries its clip's start and end (512 events of 12 s were 512 WAV files and 29 MB);
- for the window with the most energy: the |residual| spectrogram at a few removal steps (shared
  dB scale, one colour bar), and its event vectors as an image;
- the energy removed after each removal step, for every window (share of the window's first-half
  spectral L1).

The whole input is covered by default; `max_samples` cuts it.
"""
import html
import os
import shutil
import sys
import time
import uuid

import numpy as np

from sparse_jax import files, metrics
from sparse_jax import representation
from sparse_jax.codec import edit, sjx
from sparse_jax.errors import UserError

AUDIO_FILES = (
    ("original.mp3", "Original"),
    ("reconstruction.mp3", "Reconstruction"),
    ("random_vectors.mp3", "Random event vectors, original times"),
    ("random_times.mp3", "Original event vectors, random times"),
    ("perturbed.mp3", "Every vector moved by one shared random offset"),
)
FIGURES = ("residual_steps.png", "energy_removed.png", "event_vectors.png")
# The event clips: how many (the loudest events), how long each at most, the silence between.
MAX_CLIPS = 160
MAX_CLIP_S = 0.4
CLIP_GAP_S = 0.1
# A player track whose peak is above this is scaled down to it (MP3 decoders clip at 1).
PLAYER_PEAK = 0.99
# The residual view's dB range below the window input's loudest bin.
RESIDUAL_DB_RANGE = 80.0
PAGE_WIDTH_PX = 860


# ------------------------------------------------------------------------------------------------
# Embeddings.


def minmax_normalise(x_NxD: np.ndarray) -> np.ndarray:
  """Each dimension scaled to [0, 1] over the rows (a constant dimension becomes 0)."""
  x = np.asarray(x_NxD, np.float64)
  if x.size == 0:
    return x
  lo, hi = x.min(0), x.max(0)
  span = np.where(hi > lo, hi - lo, 1.0)
  return (x - lo) / span


def random_rgb(x_NxD: np.ndarray, seed: int = 0) -> np.ndarray:
  """Colours (N, 3) in [0, 1]: a random U(0, 1) (D, 3) projection, each channel min-max scaled."""
  x = np.asarray(x_NxD, np.float64)
  proj = np.random.default_rng(seed).uniform(0.0, 1.0, (x.shape[1], 3))
  return minmax_normalise(x @ proj) if len(x) > 1 else np.full((len(x), 3), 0.5)


def tsne_1d(x_NxD: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
  """A 1-D t-SNE of the points (openTSNE: FFT-accelerated, PCA start), zero-mean float64 (N,).

  The perplexity is capped at (N - 1) / 3.  Fewer than 5 points have no neighbourhoods to keep:
  they get their first principal component instead; identical points all get 0.
  """
  x = np.asarray(x_NxD, np.float64)
  n = x.shape[0]
  centred = x - x.mean(0) if n else x
  if n == 0 or not np.any(centred):
    return np.zeros(n)
  if n < 5:
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[0]
  import openTSNE  # pylint: disable=g-import-not-at-top
  perplexity = float(np.clip(perplexity, 1.0, (n - 1) / 3.0))
  # One thread: the report runs beside other work on small machines; N is a few thousand at most.
  y = np.asarray(openTSNE.TSNE(n_components=1, perplexity=perplexity, initialization="pca",
                               random_state=seed, n_jobs=1, verbose=False).fit(x))[:, 0]
  return y - y.mean()


# ------------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg backend).


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path):
  fig.savefig(path, dpi=100)
  _pyplot().close(fig)


def _residual_png(path, residuals_SxFxH, labels, sample_rate, hop, title):
  """|residual| in dB below the window input's loudest bin, one shared scale and colour bar."""
  plt = _pyplot()
  n = len(residuals_SxFxH)
  fig, axes = plt.subplots(1, n, figsize=(PAGE_WIDTH_PX / 100, 2.9), sharey=True, squeeze=False,
                           layout="constrained")
  ref = max(float(np.abs(residuals_SxFxH[0]).max()), 1e-12)
  extent = (0, residuals_SxFxH[0].shape[1] * hop / sample_rate, 0, sample_rate / 2000)
  image = None
  for ax, residual, label in zip(axes.flat, residuals_SxFxH, labels):
    db = 20 * np.log10(np.maximum(np.abs(residual), 1e-12) / ref)
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-RESIDUAL_DB_RANGE,
                      vmax=0, extent=extent, interpolation="nearest")
    ax.set_title(label, fontsize=9)
    ax.set_xlabel("time in window (s)", fontsize=8)
    ax.tick_params(labelsize=7)
  axes[0, 0].set_ylabel("frequency (kHz)", fontsize=8)
  bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9)
  bar.set_label("|residual| (dB re. input peak)", fontsize=8)
  bar.ax.tick_params(labelsize=7)
  fig.suptitle(title, fontsize=10)
  _save(fig, path)


def _energy_png(path, shares_WxS1, kept_W, chosen, chosen_label):
  """The energy removed after each removal step: every window, their median, the chosen one."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(PAGE_WIDTH_PX / 100, 3.2), layout="constrained")
  removed_WxS1 = 100 * (1 - np.asarray(shares_WxS1, np.float64))
  steps = np.arange(removed_WxS1.shape[1])
  sounding = [w for w in range(len(removed_WxS1)) if shares_WxS1[w, 0] > 0]
  for w in sounding:
    ax.plot(steps[:kept_W[w] + 1], removed_WxS1[w, :kept_W[w] + 1], color="0.8", lw=0.7)
  if sounding:
    ax.plot([], [], color="0.8", label=f"each of {len(sounding)} windows")
    ax.plot(steps, np.median(removed_WxS1[sounding], axis=0), color="k", lw=1.5,
            label="median over windows")
  ax.plot(steps[:kept_W[chosen] + 1], removed_WxS1[chosen, :kept_W[chosen] + 1], "o-",
          color="C1", ms=3, label=chosen_label)
  ax.axhline(0, color="0.5", lw=0.6)
  ax.set_xlabel("removal step (events placed in the window)")
  ax.set_ylabel("energy removed (%)")
  ax.set_title("Energy removed after each step: % of the window's first-half spectral L1 "
               "(magnitude) removed", fontsize=10)
  ax.legend(fontsize=8)
  _save(fig, path)


def _vectors_png(path, vectors_ExD, title):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(PAGE_WIDTH_PX / 100, 3.4), layout="constrained")
  if len(vectors_ExD):
    image = ax.imshow(vectors_ExD, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="value (network output, no unit)")
  ax.set_xlabel("vector dimension")
  ax.set_ylabel("event (removal order)")
  ax.set_title(title, fontsize=10)
  _save(fig, path)


# ------------------------------------------------------------------------------------------------
# Audio.


def _write_mp3(path, audio_T, sample_rate):
  """An MP3 player track, scaled below full scale if it would clip; returns the scale (1: none)."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
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


# ------------------------------------------------------------------------------------------------
# The page.

# Fits a 900 px laptop window: nothing is wider than the page, and the page shrinks with it.
_STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 16px auto; padding: 0 12px; max-width: %dpx;
       color: #222; line-height: 1.35; }
h1 { font-size: 1.45em; } h2 { font-size: 1.12em; margin-top: 1.5em; border-bottom: 1px solid #ccc; }
table.summary { border-collapse: collapse; font-size: 0.92em; }
table.summary td { padding: 2px 14px 2px 0; vertical-align: top; overflow-wrap: anywhere; }
table.summary td:first-child { color: #666; }
.players { display: grid; grid-template-columns: minmax(0, 17em) minmax(0, 1fr); gap: 6px 14px;
           align-items: center; }
audio { width: 100%%; }
img, svg { display: block; max-width: 100%%; height: auto; border: 1px solid #ddd; }
svg circle[data-start] { cursor: pointer; }
svg circle { stroke: #222; stroke-width: 0.6; }
svg circle[data-start]:hover, svg circle.playing { stroke-width: 2.5; }
.note { color: #666; font-size: 0.9em; }
""" % (PAGE_WIDTH_PX + 24)

# Clicking a point plays its clip out of the one sprite file and stops at the clip's end.
_SCRIPT = """
(function () {
  var player = document.getElementById('event-player');
  var label = document.getElementById('event-label');
  var points = document.querySelectorAll('circle[data-start]');
  var end = null;
  function watch() {
    if (end === null) { return; }
    if (player.currentTime >= end || player.paused) { player.pause(); end = null; return; }
    requestAnimationFrame(watch);
  }
  points.forEach(function (c) {
    c.addEventListener('click', function () {
      points.forEach(function (o) { o.classList.remove('playing'); });
      c.classList.add('playing');
      var start = parseFloat(c.getAttribute('data-start'));
      end = parseFloat(c.getAttribute('data-end'));
      player.setAttribute('data-clip', c.getAttribute('data-start') + '-' + c.getAttribute('data-end'));
      label.textContent = c.getAttribute('data-label');
      player.currentTime = start;
      var playing = player.play();
      if (playing && playing.catch) { playing.catch(function () {}); }
      requestAnimationFrame(watch);
    });
  });
})();
"""


def _tick_step(duration):
  """Seconds between time ticks: at most about 12 ticks on the axis."""
  for step in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
    if duration / step <= 12:
      return step
  return 10 ** np.ceil(np.log10(duration / 12))


def _svg_scatter(times_E, y_E, rgb_Ex3, gains_E, duration, clips, width=PAGE_WIDTH_PX,
                 height=300):
  """The clickable timeline: x time (s), y the t-SNE coordinate; `clips` maps an event index to
  its (start, end) in events.mp3.  Scales with the page (viewBox, width 100%)."""
  left, right, top, bottom = 58, 12, 12, 40
  plot_w, plot_h = width - left - right, height - top - bottom
  n = len(times_E)
  x_px = left + plot_w * np.asarray(times_E) / max(duration, 1e-9)
  if n and np.ptp(y_E) > 0:
    y_px = top + plot_h * (1 - (y_E - y_E.min()) / np.ptp(y_E))
  else:
    y_px = np.full(n, top + plot_h / 2)
  parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'role="img" aria-label="event timeline" style="width:100%">',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
           'stroke="#ccc"/>']
  step = _tick_step(max(duration, 1e-3))
  for k in range(int(np.floor(duration / step)) + 1):
    t = k * step
    x = left + plot_w * t / max(duration, 1e-9)
    parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h + 4}" '
                 f'stroke="#e0e0e0"/><text x="{x:.1f}" y="{top + plot_h + 16}" font-size="11" '
                 f'text-anchor="middle" fill="#555">{t:g}</text>')
  parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="12" '
               'text-anchor="middle" fill="#333">event time (s)</text>')
  parts.append(f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" '
               'font-size="12" text-anchor="middle" fill="#333">1-D t-SNE of the vector</text>')
  parts.append(f'<text transform="translate(32 {top + plot_h / 2:.1f}) rotate(-90)" '
               'font-size="10" text-anchor="middle" fill="#777">(no unit: nearby = similar)</text>')
  # Points without a clip first, so the clickable ones are drawn on top.
  for i in sorted(range(n), key=lambda i: i in clips):
    r, g, b = (int(round(255 * v)) for v in rgb_Ex3[i])
    label = f"event {i}: {times_E[i]:.3f} s, gain {gains_E[i]:.4g}"
    if i in clips:
      start, end = clips[i]
      extra, radius = f' data-start="{start:.3f}" data-end="{end:.3f}"', 6
    else:
      extra, radius, label = "", 3.5, label + " (no clip: only the loudest events have one)"
    parts.append(f'<circle cx="{x_px[i]:.1f}" cy="{y_px[i]:.1f}" r="{radius}" '
                 f'fill="rgb({r},{g},{b})"{extra} data-label="{html.escape(label)}">'
                 f'<title>{html.escape(label)}</title></circle>')
  parts.append("</svg>")
  return "\n".join(parts)


def _page(summary_rows, notes, svg, window_label, audio_files=AUDIO_FILES):
  rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary_rows)
  players = "\n".join(
      f'<div>{html.escape(title)}</div><audio controls preload="none" src="{name}"></audio>'
      for name, title in audio_files)
  note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
  window_label = html.escape(window_label)
  return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sparse_jax codec report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Sparse audio codec: report</h1>
<table class="summary">
{rows}
</table>
{note_html}
<h2>Listen</h2>
<div class="players">
{players}
</div>
<h2>Event timeline</h2>
<p class="note">Each point is an event: x its time, y a 1-D t-SNE of its vector (each dimension
min-max normalised; nearby points have similar vectors), colour a random projection of the vector
to RGB.  Click a large point to hear that event alone (peak-normalised).</p>
{svg}
<p><span id="event-label" class="note">no event selected</span><br>
<audio id="event-player" controls preload="none" src="events.mp3"></audio></p>
<h2>Residual after a few removal steps ({window_label})</h2>
<img src="residual_steps.png" alt="residual spectrogram at a few removal steps">
<h2>Energy removed per step</h2>
<img src="energy_removed.png" alt="energy removed after each removal step">
<h2>Event vectors ({window_label})</h2>
<img src="event_vectors.png" alt="event vectors of one window">
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _replace_dir(tmp_dir, out_dir):
  """Moves a finished report folder into place; an existing one is replaced only at the end."""
  old = None
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise UserError(f"--out {out_dir} is a file; pass a folder path")
    old = f"{out_dir}.old-{uuid.uuid4().hex[:8]}"
    os.replace(out_dir, old)
  os.replace(tmp_dir, out_dir)
  if old:
    shutil.rmtree(old, ignore_errors=True)


def _residual_steps(kept):
  """The removal steps the residual view shows: the input, the first step, and a few after."""
  return sorted({0, min(1, kept), kept // 4, kept // 2, kept})


def _render_clips(codec, events, chosen):
  """Renders every event alone (window start, its gain, no fine shift), in batches.

  Returns ({index: clip} for the `chosen` events, the spectral centroid of every event in Hz):
  only the clips that go into events.mp3 are kept, so memory stays at one batch.
  """
  from sparse_jax.codec import stream  # pylint: disable=g-import-not-at-top
  clips, centroids = {}, np.full(len(events), np.nan)
  max_len = min(codec.n_samples // 2, int(MAX_CLIP_S * codec.sample_rate))
  for lo in range(0, len(events), stream.RENDER_BATCH):
    hi = min(lo + stream.RENDER_BATCH, len(events))
    audio = codec.render(events.vectors[lo:hi], np.zeros(hi - lo, np.int32), events.gains[lo:hi],
                         np.zeros(hi - lo, np.float32))
    centroids[lo:hi] = representation.spectral_centroids_hz(audio, codec.sample_rate)
    for i in range(lo, hi):
      if i in chosen:
        clips[i] = _event_clip(audio[i - lo], codec.sample_rate, max_len)
  return clips, centroids


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
    codec: a `stream.Codec`.
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
    raise UserError(f"--out {out_dir}: its parent folder {parent} does not exist; create it")

  # The encode, keeping the input spectrogram of the window with the most energy (its first
  # half's L1) for the per-step figures: one window in memory, whatever the file's length.
  half = codec.half
  best = {"l1": -1.0}

  def hook(w, start, spec_FxN, residual_FxN):
    l1 = float(np.abs(spec_FxN[:, :half]).sum())
    if l1 > best["l1"]:
      best.update(l1=l1, w=w, spec=spec_FxN)

  n_windows = codec.windows_for(audio_T.size)[1]
  say(f"encoding {duration:.1f} s ({n_windows} windows)")
  start = time.time()
  events, info = codec.encode(audio_T, return_info=True, window_hook=hook, progress=progress,
                              refine=refine)
  encode_seconds = time.time() - start
  say(f"{len(events)} events; decoding the reconstruction and 3 edits")
  recon = codec.decode(events, progress=progress)
  audio_files = AUDIO_FILES
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

    # Timeline.
    say(f"t-SNE of {len(events)} vectors")
    normalised = minmax_normalise(events.vectors)
    y_E = tsne_1d(normalised, seed=seed)
    rgb = random_rgb(normalised, seed=seed)
    times = events.times_seconds
    svg = _svg_scatter(times, y_E, rgb, events.gains, duration, spans)

    # The chosen window, step by step: replay its events (removal order) on its input.
    say("figures")
    w = int(best["w"])
    t0 = w * half * codec.hop / sr
    t1 = t0 + codec.n_samples / sr / 2
    window_label = f"window {w + 1} of {len(info.kept_W)}, {t0:.2f}-{t1:.2f} s"
    sel = np.flatnonzero(info.event_window_E == w)
    steps = info.event_step_E[sel]
    spectra = [metrics.stft_magnitude(a, codec.window, codec.hop)
               for a in (codec.render(events.vectors[sel], events.frames[sel] - w * half,
                                      events.gains[sel], events.offsets[sel])
                         if len(sel) else [])]
    kept = int(info.kept_W[w])
    shown = _residual_steps(kept)
    residual = best["spec"].astype(np.float64)
    residuals, labels = [], []
    for step in range(kept + 1):
      if step > 0:
        for j in np.flatnonzero(steps == step - 1):
          residual = residual - spectra[j]
      if step in shown:
        residuals.append(residual[:, :half].copy())
        labels.append("input" if step == 0 else f"after step {step}")
    _residual_png(os.path.join(tmp_dir, "residual_steps.png"), residuals, labels, sr, codec.hop,
                  f"|residual| of the first half of {window_label} (the window with the most "
                  "energy)")
    _energy_png(os.path.join(tmp_dir, "energy_removed.png"), info.shares_WxS1, info.kept_W, w,
                window_label)
    _vectors_png(os.path.join(tmp_dir, "event_vectors.png"), events.vectors[sel],
                 f"event vectors of {window_label} ({len(sel)} events x {events.event_dim} "
                 "dimensions)")

    mrstft = (metrics.multi_resolution_stft_distance(audio_T, recon)
              if np.any(audio_T) and np.any(recon) else float("nan"))
    removed = 1 - info.shares_WxS1[w, kept]
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
        events.vectors, events.frames - info.event_window_E * codec.half, events.gains)
    if "effective_rank" in health:
      sounding = centroids[(events.gains > 0) & np.isfinite(centroids) & (centroids > 0)]
      spread = float(np.std(np.log2(sounding))) if len(sounding) else 0.0
      summary += [
          ("event vectors: effective rank", f"{health['effective_rank']:.2f} of "
                                            f"{events.event_dim} dimensions"),
          ("event vectors: mean |cosine|", f"{health['mean_abs_cosine']:.3f} (1: one direction)"),
          (f"events in a window's first {representation.FIRST_FRAMES} frames",
           f"{100 * health['first_frames_share']:.1f}%"),
          ("spread of the events' spectral centroids", f"{spread:.2f} octaves"),
      ]
    if total > audio_T.size:
      notes.append(f"Only the first {duration:.2f} s of the input's {total / sr:.2f} s are "
                   "shown (--max-seconds).")
    with open(os.path.join(tmp_dir, "index.html"), "w") as f:
      f.write(_page(summary, notes, svg, window_label, audio_files))
    _replace_dir(tmp_dir, out_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return os.path.join(out_dir, "index.html")
