"""The report's event timelines, inline SVGs whose points play the event's own sound when clicked
(page.py holds the player):

- the piano roll: each event at its time and its pitch (heard from the event alone,
  `sparse_jax.notes`; MIDI note names on the axis, pitchless events on a row of their own), its
  size its gain, its colour its timbre cluster (k-means of the vectors, with a legend);
- the t-SNE view (the paper's figure): its height a 1-D t-SNE of the vector, its colour a random
  projection of the vector to RGB.
"""
import html

import numpy as np
from scipy.cluster import vq

from sparse_jax.report.page import PAGE_WIDTH_PX


def minmax_normalise(x_ExD: np.ndarray) -> np.ndarray:
  """Each dimension scaled to [0, 1] over the rows (a constant dimension becomes 0)."""
  x = np.asarray(x_ExD, np.float64)
  if x.size == 0:
    return x
  lo, hi = x.min(0), x.max(0)
  span = np.where(hi > lo, hi - lo, 1.0)
  return (x - lo) / span


def random_rgb(x_ExD: np.ndarray, seed: int = 0) -> np.ndarray:
  """Colours (N, 3) in [0, 1]: a random U(0, 1) (D, 3) projection, each channel min-max scaled."""
  x = np.asarray(x_ExD, np.float64)
  proj = np.random.default_rng(seed).uniform(0.0, 1.0, (x.shape[1], 3))
  return minmax_normalise(x @ proj) if len(x) > 1 else np.full((len(x), 3), 0.5)


def tsne_1d(x_ExD: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
  """A 1-D t-SNE of the points (openTSNE: FFT-accelerated, PCA start), zero-mean float64 (N,).

  The perplexity is capped at (N - 1) / 3.  Fewer than 5 points have no neighbourhoods to keep:
  they get their first principal component instead; identical points all get 0.
  """
  x = np.asarray(x_ExD, np.float64)
  n = x.shape[0]
  centred = x - x.mean(0) if n else x
  if n == 0 or not np.any(centred):
    return np.zeros(n)
  if n < 5:
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[0]
  import openTSNE
  perplexity = float(np.clip(perplexity, 1.0, (n - 1) / 3.0))
  # One thread: the report runs beside other work on small machines; N is a few thousand at most.
  y = np.asarray(openTSNE.TSNE(n_components=1, perplexity=perplexity, initialization="pca",
                               random_state=seed, n_jobs=1, verbose=False).fit(x))[:, 0]
  return y - y.mean()


# Timbre clusters' colours (Okabe-Ito: told apart with the common colour-vision deficiencies).
CLUSTER_RGB = ((0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26),
               (0.0, 0.45, 0.70), (0.84, 0.37, 0.0), (0.80, 0.47, 0.65), (0.5, 0.5, 0.5))
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: int) -> str:
  """A MIDI note number as a name: 60 -> 'C4' (scientific pitch notation)."""
  return f"{_NOTE_NAMES[int(midi) % 12]}{int(midi) // 12 - 1}"


def timbre_clusters(x_ExD: np.ndarray, k: int = len(CLUSTER_RGB), seed: int = 0) -> np.ndarray:
  """Cluster labels (N,) of the (normalised) vectors: k-means++ with k at most N, seeded."""
  x = np.asarray(x_ExD, np.float64)
  k = min(k, len(x))
  if k <= 1:
    return np.zeros(len(x), np.int64)
  _, labels = vq.kmeans2(x, k, minit="++", seed=seed)
  # Numbered by size, largest first, so the legend reads from the commonest timbre.
  order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
  return np.argsort(order)[labels]


def pitch_axis(midi_E: np.ndarray) -> tuple[np.ndarray, list]:
  """Heights for the piano roll and its ticks: pitched events at their MIDI number, pitchless
  ones on a row two semitones below the lowest pitch.  Returns (y (N,), [(y, label)])."""
  midi_E = np.asarray(midi_E, np.float64)
  pitched = np.isfinite(midi_E)
  lo = float(midi_E[pitched].min()) if pitched.any() else 60.0
  hi = float(midi_E[pitched].max()) if pitched.any() else 60.0
  floor = lo - 2
  y = np.where(pitched, midi_E, floor)
  c_notes = range(int(np.ceil(lo / 12) * 12), int(hi) + 1, 12)
  ticks = [(float(m), note_name(m)) for m in c_notes] or [(lo, note_name(int(lo)))]
  if not pitched.all():
    ticks.append((floor, "no pitch"))
  return y, ticks


def _tick_step(duration):
  """Seconds between time ticks: at most about 12 ticks on the axis."""
  for step in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
    if duration / step <= 12:
      return step
  return 10 ** np.ceil(np.log10(duration / 12))


def svg_scatter(times_E, y_E, rgb_Ex3, gains_E, duration, clips, width=PAGE_WIDTH_PX,
                height=300, *, y_label="1-D t-SNE of the vector",
                y_note="(no unit: nearby = similar)", y_ticks=None, sized_by_gain=False,
                legend=(), labels_E=None):
  """A clickable timeline: x time (s), y `y_E` (labelled `y_label`; `y_ticks` [(y, text)] or
  none); `clips` maps an event index to its (start, end) in events.mp3.  `sized_by_gain`: the
  points' area follows the gain (the clickable ones stay large enough to hit); `legend`:
  [(rgb, text)] drawn in the top-right corner; `labels_E`: extra words for each point's label.
  Scales with the page (viewBox, width 100%)."""
  left, right, top, bottom = 58, 12, 12, 40
  plot_w, plot_h = width - left - right, height - top - bottom
  n = len(times_E)
  x_px = left + plot_w * np.asarray(times_E) / max(duration, 1e-9)
  y_E = np.asarray(y_E, np.float64)
  values = np.concatenate([y_E, [t for t, _ in (y_ticks or [])]])
  y_lo, y_span = (values.min(), np.ptp(values)) if values.size else (0.0, 0.0)
  pad = 0.04 * y_span
  to_px = lambda v: top + plot_h * (1 - (v - y_lo + pad) / (y_span + 2 * pad))
  y_px = to_px(y_E) if y_span > 0 else np.full(n, top + plot_h / 2)
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
  parts.append(f'<text transform="translate(12 {top + plot_h / 2:.1f}) rotate(-90)" '
               f'font-size="12" text-anchor="middle" fill="#333">{html.escape(y_label)}</text>')
  if y_note:
    parts.append(f'<text transform="translate(26 {top + plot_h / 2:.1f}) rotate(-90)" '
                 'font-size="10" text-anchor="middle" fill="#777">'
                 f'{html.escape(y_note)}</text>')
  for value, text in (y_ticks or []) if y_span > 0 else ():
    y = to_px(value)
    parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                 f'stroke="#e6e6e6"/><text x="{left - 6}" y="{y + 4:.1f}" font-size="10" '
                 f'text-anchor="end" fill="#555">{html.escape(text)}</text>')
  for k, (rgb, text) in enumerate(legend):
    r, g, b = (int(round(255 * v)) for v in rgb)
    x, y = left + plot_w - 120, top + 12 + 14 * k
    parts.append(f'<rect x="{x}" y="{y - 8}" width="9" height="9" fill="rgb({r},{g},{b})"/>'
                 f'<text x="{x + 14}" y="{y}" font-size="10" fill="#333">'
                 f'{html.escape(text)}</text>')
  gains = np.asarray(gains_E, np.float64)
  loudest = gains.max() if n and gains.max() > 0 else 1.0
  # Points without a clip first, so the clickable ones are drawn on top.
  for i in sorted(range(n), key=lambda i: i in clips):
    r, g, b = (int(round(255 * v)) for v in rgb_Ex3[i])
    label = f"event {i}: {times_E[i]:.3f} s, gain {gains_E[i]:.4g}"
    if labels_E is not None:
      label += f", {labels_E[i]}"
    if i in clips:
      start, end = clips[i]
      extra, radius = f' data-start="{start:.3f}" data-end="{end:.3f}"', 6
    else:
      extra, radius, label = "", 3.5, label + " (no clip: only the loudest events have one)"
    if sized_by_gain:  # area by gain, from 2 px for the quietest to 9 px at the loudest
      radius = max(2 + 7 * np.sqrt(max(gains[i], 0.0) / loudest), radius if i in clips else 2)
    parts.append(f'<circle cx="{x_px[i]:.1f}" cy="{y_px[i]:.1f}" r="{radius}" '
                 f'fill="rgb({r},{g},{b})"{extra} data-label="{html.escape(label)}">'
                 f'<title>{html.escape(label)}</title></circle>')
  parts.append("</svg>")
  return "\n".join(parts)
