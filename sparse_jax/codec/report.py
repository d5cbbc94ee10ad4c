"""A self-contained HTML report of what the codec does to one recording (the paper's figures).

`write_report(audio_T, codec, out_dir)` writes `out_dir/index.html` and, beside it, the files it
shows (no server, no external URLs or libraries; a few lines of vanilla inline JS):

- audio players: the original, the reconstruction, and the paper's three edit experiments (random
  vectors at the original times, the original vectors at random times, one shared perturbation of
  every vector), as 32-bit float WAVs (no clipping);
- the event timeline: x = event time, y = a 1-D t-SNE of the event vectors (each dimension min-max
  normalised), colour = a random 32 -> 3 projection of them to RGB.  A PNG, and an inline SVG
  scatter where clicking a point plays that event's own sound (`events/event_NNNN.wav`);
- for the first window of the input: the log-magnitude residual spectrogram (first half) after
  each removal step (a grid PNG), the per-step energy-removal curve (PNG) and the event vectors as
  an image (viridis).

The report covers at most `max_samples` of the input (default four model windows, the paper's
streaming demo length), since every event gets its own WAV file.
"""
import html
import os
import shutil
import time
import uuid

import numpy as np

from sparse_jax import audio_io, metrics
from sparse_jax import representation
from sparse_jax.codec import edit, sjx
from sparse_jax.errors import UserError

AUDIO_FILES = (
    ("original.wav", "Original"),
    ("reconstruction.wav", "Reconstruction"),
    ("random_vectors.wav", "Random event vectors, original times"),
    ("random_times.wav", "Original event vectors, random times"),
    ("perturbed.wav", "Every vector moved by one shared random offset"),
)


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


def _conditional_p(dist2_NxN: np.ndarray, perplexity: float) -> np.ndarray:
  """Row-wise Gaussian affinities whose entropy matches log(perplexity) (binary search on beta)."""
  n = dist2_NxN.shape[0]
  target = np.log(perplexity)
  p = np.zeros((n, n))
  for i in range(n):
    d = np.delete(dist2_NxN[i], i)
    d = d - d.min()  # shifting the distances does not change the normalised row
    beta, lo, hi = 1.0, 0.0, np.inf
    for _ in range(64):
      w = np.exp(-d * beta)
      total = w.sum()
      row = w / total
      entropy = -np.sum(row * np.log(np.maximum(row, 1e-300)))
      if abs(entropy - target) < 1e-5:
        break
      if entropy > target:  # too flat: sharpen
        lo = beta
        beta = beta * 2 if hi == np.inf else (beta + hi) / 2
      else:
        hi = beta
        beta = (beta + lo) / 2
    p[i, np.arange(n) != i] = row
  return p


def tsne_1d(x_NxD: np.ndarray, perplexity: float = 30.0, n_iter: int = 750,
            seed: int = 0) -> np.ndarray:
  """Exact t-SNE to one dimension (van der Maaten & Hinton 2008), in numpy.

  Gaussian input affinities at the given perplexity (capped at (N - 1) / 3), symmetrised; a
  Student-t output kernel; a PCA initial layout; gradient descent with momentum 0.5 -> 0.8,
  per-coordinate adaptive gains and early exaggeration (12 for the first 250 iterations).
  O(N^2) per iteration: fine for the few hundred events of a report.

  Args:
    x_NxD: the points.
    perplexity: the effective number of neighbours.
    n_iter: gradient steps.
    seed: seed of the tiny jitter added to the initial layout (breaks ties).

  Returns:
    float64 (N,) coordinates (zero-mean).
  """
  x = np.asarray(x_NxD, np.float64)
  n = x.shape[0]
  if n <= 1:
    return np.zeros(n)
  sq = np.sum(x * x, 1)
  dist2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
  perplexity = float(np.clip(perplexity, 1.0, max((n - 1) / 3.0, 1.0)))
  p = _conditional_p(dist2, perplexity)
  p = np.maximum((p + p.T) / (2 * n), 1e-12)
  # PCA initialisation (as openTSNE / scikit-learn): in one dimension points cannot move past each
  # other easily, so a random start leaves stragglers on the wrong side of other clusters.
  centred = x - x.mean(0)
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  y = centred @ vt[0]
  jitter = np.random.default_rng(seed).normal(0.0, 1e-8, n)  # breaks ties between equal points
  y = (y / y.std() * 1e-4 if y.std() > 0 else np.zeros(n)) + jitter
  velocity = np.zeros(n)
  gains = np.ones(n)
  # The usual 2-D learning rates (N / 48, at least 50) overshoot in one dimension under early
  # exaggeration and scatter the clusters; 10 converges without that.
  learning_rate = 10.0
  for it in range(n_iter):
    exaggeration = 12.0 if it < 250 else 1.0
    diff = y[:, None] - y[None, :]
    num = 1.0 / (1.0 + diff * diff)
    np.fill_diagonal(num, 0.0)
    q = np.maximum(num / num.sum(), 1e-12)
    grad = 4.0 * np.sum((exaggeration * p - q) * num * diff, axis=1)
    same_sign = np.sign(grad) == np.sign(velocity)
    gains = np.maximum(np.where(same_sign, gains * 0.8, gains + 0.2), 0.01)
    momentum = 0.5 if it < 250 else 0.8
    velocity = momentum * velocity - learning_rate * gains * grad
    y = y + velocity
    y = y - y.mean()
  return y


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


def _timeline_png(path, times_E, y_E, rgb_Ex3, duration):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(12, 3.5), layout="constrained")
  if len(times_E):
    ax.scatter(times_E, y_E, c=rgb_Ex3, s=28, edgecolors="k", linewidths=0.3)
  ax.set_xlim(0, max(duration, 1e-3))
  ax.set_xlabel("event time (s)")
  ax.set_ylabel("1-D t-SNE of the event vector")
  ax.set_title(f"{len(times_E)} events; colour = random projection of the vector to RGB")
  _save(fig, path)


def _residual_grid_png(path, residuals_SxFxH, labels, sample_rate, hop):
  plt = _pyplot()
  n = len(residuals_SxFxH)
  cols = min(8, n)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 1.8 * rows + 0.4),
                           squeeze=False, layout="constrained")
  logs = [np.log10(np.abs(r) + 1e-6) for r in residuals_SxFxH]
  top = max(float(l.max()) for l in logs)
  extent = (0, residuals_SxFxH[0].shape[1] * hop / sample_rate, 0, sample_rate / 2000)
  for i, ax in enumerate(axes.flat):
    ax.set_xticks([])
    ax.set_yticks([])
    if i >= n:
      ax.axis("off")
      continue
    ax.imshow(logs[i], origin="lower", aspect="auto", cmap="magma", vmin=top - 5, vmax=top,
              extent=extent, interpolation="nearest")
    ax.set_title(labels[i], fontsize=8)
  fig.suptitle("log10 |residual|, first half of window 1 (0 - "
               f"{extent[1]:.2f} s, 0 - {extent[3]:.1f} kHz)", fontsize=10)
  _save(fig, path)


def _energy_curve_png(path, shares_WxS1, kept_W):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
  steps = np.arange(shares_WxS1.shape[1])
  for w in range(1, len(shares_WxS1)):
    ax.plot(steps[:kept_W[w] + 1], shares_WxS1[w, :kept_W[w] + 1], color="0.75", lw=0.8)
  ax.plot(steps[:kept_W[0] + 1], shares_WxS1[0, :kept_W[0] + 1], "o-", color="C0", ms=3,
          label="window 1")
  if len(shares_WxS1) > 1:
    ax.plot([], [], color="0.75", label="other windows")
  ax.set_xlabel("removal step")
  ax.set_ylabel("first-half residual L1 / initial")
  ax.set_title("energy removal per step")
  ax.legend()
  _save(fig, path)


def _vectors_png(path, vectors_ExD):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 4.5), layout="constrained")
  if len(vectors_ExD):
    im = ax.imshow(vectors_ExD, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax)
  ax.set_xlabel("dimension")
  ax.set_ylabel("event (removal order)")
  ax.set_title(f"event vectors of window 1 ({vectors_ExD.shape[0]} x {vectors_ExD.shape[1]})")
  _save(fig, path)


# ------------------------------------------------------------------------------------------------
# Audio.


def _write_wav(path, audio_T, sample_rate):
  audio_io.write_audio(path, np.asarray(audio_T, np.float32), sample_rate, subtype="FLOAT")


def _event_clip(audio_T, sample_rate, max_len):
  """An event's own sound, trimmed after it decays below -60 dB and peak-normalised to 0.9."""
  audio_T = np.asarray(audio_T[:max_len], np.float64)
  peak = np.abs(audio_T).max() if audio_T.size else 0.0
  if peak <= 0:
    return np.zeros(int(0.05 * sample_rate), np.float32)
  loud = np.flatnonzero(np.abs(audio_T) > 1e-3 * peak)
  end = min(max(int(loud[-1]) + 1, int(0.05 * sample_rate)), len(audio_T))
  return (0.9 * audio_T[:end] / peak).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# The page.

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table.summary td { padding: 2px 14px 2px 0; } table.summary td:first-child { color: #666; }
.players { display: grid; grid-template-columns: 340px 1fr; gap: 6px 16px; align-items: center; }
img { max-width: 100%; border: 1px solid #ddd; }
svg circle { cursor: pointer; stroke: #222; stroke-width: 0.6; }
svg circle:hover, svg circle.playing { stroke-width: 2.5; }
.note { color: #666; font-size: 0.9em; }
"""

_SCRIPT = """
(function () {
  var player = document.getElementById('event-player');
  var label = document.getElementById('event-label');
  var points = document.querySelectorAll('circle[data-src]');
  points.forEach(function (c) {
    c.addEventListener('click', function () {
      points.forEach(function (o) { o.classList.remove('playing'); });
      c.classList.add('playing');
      player.src = c.getAttribute('data-src');
      label.textContent = c.getAttribute('data-label');
      player.play();
    });
  });
})();
"""


def _svg_scatter(times_E, y_E, rgb_Ex3, gains_E, duration, width=1040, height=300):
  pad = 30
  n = len(times_E)
  x_px = pad + (width - 2 * pad) * np.asarray(times_E) / max(duration, 1e-9)
  if n and np.ptp(y_E) > 0:
    y_px = pad + (height - 2 * pad) * (1 - (y_E - y_E.min()) / np.ptp(y_E))
  else:
    y_px = np.full(n, height / 2)
  parts = [f'<svg width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="event timeline">',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fafafa" '
           'stroke="#ddd"/>']
  for s in range(int(np.floor(duration)) + 1):
    x = pad + (width - 2 * pad) * s / max(duration, 1e-9)
    parts.append(f'<line x1="{x:.1f}" y1="{pad / 2}" x2="{x:.1f}" y2="{height - pad / 2}" '
                 f'stroke="#e4e4e4"/><text x="{x + 2:.1f}" y="{height - 4}" font-size="10" '
                 f'fill="#888">{s} s</text>')
  for i in range(n):
    r, g, b = (int(round(255 * v)) for v in rgb_Ex3[i])
    label = f"event {i}: {times_E[i]:.3f} s, gain {gains_E[i]:.4g}"
    parts.append(f'<circle cx="{x_px[i]:.1f}" cy="{y_px[i]:.1f}" r="6" fill="rgb({r},{g},{b})" '
                 f'data-src="events/event_{i:04d}.wav" data-label="{html.escape(label)}">'
                 f'<title>{html.escape(label)}</title></circle>')
  parts.append("</svg>")
  return "\n".join(parts)


def _page(summary_rows, notes, svg):
  rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary_rows)
  players = "\n".join(
      f'<div>{html.escape(title)}</div><audio controls preload="none" src="{name}"></audio>'
      for name, title in AUDIO_FILES)
  note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
  return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
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
<p class="note">x: event time; y: 1-D t-SNE of the event vectors (each dimension min-max
normalised); colour: a random projection of the vectors to RGB.  Click a point to hear that event
alone (peak-normalised).</p>
{svg}
<p><span id="event-label" class="note">no event selected</span><br>
<audio id="event-player" controls preload="none"></audio></p>
<img src="timeline.png" alt="event timeline (static)">
<h2>Residual after each step (window 1)</h2>
<img src="residual_steps.png" alt="residual spectrogram after each removal step">
<h2>Energy removal per step</h2>
<img src="energy_curve.png" alt="first-half residual share after each removal step">
<h2>Event vectors (window 1)</h2>
<img src="event_vectors.png" alt="event vectors of the first window">
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


def write_report(audio_T, codec, out_dir, seed: int = 0, max_samples: int | None = None,
                 perturb_scale: float | None = None, source_name: str = "input") -> str:
  """Encodes, decodes and edits `audio_T` and writes the report folder.

  Args:
    audio_T: mono audio at the codec's sample rate.
    codec: a `stream.Codec`.
    out_dir: the report folder (created; an existing one is replaced once the new one is complete).
    seed: seed of the edit experiments, the t-SNE and the colour projection.
    max_samples: use at most this many samples (default 4 windows of the model).
    perturb_scale: length of the shared perturbation (default a quarter of the mean vector norm).
    source_name: what to call the input on the page.

  Returns:
    The path of index.html.
  """
  audio_T = np.asarray(audio_T, np.float32).reshape(-1)
  total = audio_T.size
  max_samples = max_samples or 4 * codec.n_samples
  audio_T = audio_T[:max_samples]
  sr = codec.sample_rate
  out_dir = os.path.abspath(out_dir)
  parent = os.path.dirname(out_dir)
  if not os.path.isdir(parent):
    raise UserError(f"--out {out_dir}: its parent folder {parent} does not exist; create it")

  # The encode, with window 1's input spectrogram kept for the per-step figures.
  first = {}

  def hook(w, start, spec_FxN, residual_FxN):
    if w == 0:
      first["spec"] = spec_FxN

  start = time.time()
  events, info = codec.encode(audio_T, return_info=True, window_hook=hook)
  encode_seconds = time.time() - start
  recon = codec.decode(events)

  rng = np.random.default_rng(seed)
  norms = np.linalg.norm(events.vectors, axis=1) if len(events) else np.zeros(1)
  scale = perturb_scale if perturb_scale is not None else 0.25 * float(norms.mean() or 1.0)
  edits = {
      "random_vectors.wav": edit.random_vectors(events, rng),
      "random_times.wav": edit.random_times(events, rng),
      "perturbed.wav": edit.perturb(events, scale, rng),
  }

  tmp_dir = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp-{uuid.uuid4().hex[:8]}")
  os.makedirs(os.path.join(tmp_dir, "events"))
  try:
    _write_wav(os.path.join(tmp_dir, "original.wav"), audio_T, sr)
    _write_wav(os.path.join(tmp_dir, "reconstruction.wav"), recon, sr)
    for name, edited in edits.items():
      _write_wav(os.path.join(tmp_dir, name), codec.decode(edited), sr)

    # Each event's own sound: rendered at the start of a window, its gain, no fine shift.
    clips = codec.render(events.vectors, np.zeros(len(events), np.int32), events.gains,
                         np.zeros(len(events), np.float32)) if len(events) else []
    for i, clip in enumerate(clips):
      _write_wav(os.path.join(tmp_dir, "events", f"event_{i:04d}.wav"),
                 _event_clip(clip, sr, codec.n_samples // 2), sr)

    # Timeline.
    normalised = minmax_normalise(events.vectors)
    y_E = tsne_1d(normalised, seed=seed)
    rgb = random_rgb(normalised, seed=seed)
    times = events.times_seconds
    duration = audio_T.size / sr
    _timeline_png(os.path.join(tmp_dir, "timeline.png"), times, y_E, rgb, duration)
    svg = _svg_scatter(times, y_E, rgb, events.gains, duration)

    # Window 1, step by step: replay its events (removal order) on its input spectrogram.
    sel = np.flatnonzero(info.event_window_E == 0)
    steps = info.event_step_E[sel]
    spectra = [metrics.stft_magnitude(a, codec.window, codec.hop)
               for a in (codec.render(events.vectors[sel], events.frames[sel],
                                      events.gains[sel], events.offsets[sel])
                         if len(sel) else [])]
    residual = first["spec"].astype(np.float64)
    half = codec.half
    residuals, labels = [residual[:, :half].copy()], ["input"]
    for s in range(int(info.kept_W[0])):
      for j in np.flatnonzero(steps == s):
        residual = residual - spectra[j]
      residuals.append(residual[:, :half].copy())
      labels.append(f"after step {s + 1}")
    _residual_grid_png(os.path.join(tmp_dir, "residual_steps.png"), residuals, labels, sr,
                       codec.hop)
    _energy_curve_png(os.path.join(tmp_dir, "energy_curve.png"), info.shares_WxS1, info.kept_W)
    _vectors_png(os.path.join(tmp_dir, "event_vectors.png"), events.vectors[sel])

    mrstft = (metrics.multi_resolution_stft_distance(audio_T, recon)
              if np.any(audio_T) and np.any(recon) else float("nan"))
    summary = [
        ("input", source_name),
        ("duration", f"{duration:.2f} s of {total / sr:.2f} s" if total > audio_T.size
         else f"{duration:.2f} s"),
        ("events", f"{len(events)} in {len(info.kept_W)} windows "
                   f"(up to {events.events_per_window} per window)"),
        ("bitrate (8-bit .sjx)", f"{sjx.bitrate_kbps(events, bits=8):.2f} kbit/s"),
        ("model", f"{events.model_id.hex()} ({codec.n_samples}-sample window, hop {codec.hop})"),
        ("encode time", f"{encode_seconds:.2f} s (real-time factor "
                        f"{encode_seconds / duration:.3f}; includes compilation on first use)"),
        ("energy left in window 1", f"{info.shares_WxS1[0, int(info.kept_W[0])]:.3f} of the "
                                    "first-half L1"),
        ("MR-STFT distance (original vs reconstruction)", f"{mrstft:.3f}"),
        ("perturbation length", f"{scale:.4g} (seed {seed})"),
    ]
    # Representation health (sparse_jax/representation.py): are the events one sound at many
    # levels, or do they differ?  Each event's own sound (rendered above) gives its centroid.
    health = representation.summarize(
        events.vectors, events.frames - info.event_window_E * codec.half, events.gains,
        events_NxT=np.asarray(clips) if len(events) else None, sample_rate=sr)
    if "effective_rank" in health:
      summary += [
          ("event vectors: effective rank", f"{health['effective_rank']:.2f} of "
                                            f"{events.event_dim} dimensions"),
          ("event vectors: mean |cosine|", f"{health['mean_abs_cosine']:.3f} (1: one direction)"),
          (f"events in a window's first {representation.FIRST_FRAMES} frames",
           f"{100 * health['first_frames_share']:.1f}%"),
          ("spread of the events' spectral centroids",
           f"{health['centroid_spread_octaves']:.2f} octaves"),
      ]
    notes = []
    if total > audio_T.size:
      notes.append(f"Only the first {duration:.2f} s of the input are shown (every event gets a "
                   "file); pass --max-seconds for more.")
    with open(os.path.join(tmp_dir, "index.html"), "w") as f:
      f.write(_page(summary, notes, svg))
    _replace_dir(tmp_dir, out_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return os.path.join(out_dir, "index.html")
