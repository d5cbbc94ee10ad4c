"""The report's event timeline: each event a point at its time, its height a 1-D t-SNE of its
vector and its colour a random projection of the vector to RGB (the paper's figure), drawn as an
inline SVG whose points play the event's own sound when clicked (page.py holds the player).
"""
import html

import numpy as np

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


def _tick_step(duration):
  """Seconds between time ticks: at most about 12 ticks on the axis."""
  for step in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
    if duration / step <= 12:
      return step
  return 10 ** np.ceil(np.log10(duration / 12))


def svg_scatter(times_E, y_E, rgb_Ex3, gains_E, duration, clips, width=PAGE_WIDTH_PX,
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
