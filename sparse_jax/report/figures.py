"""The report's three figures (matplotlib, Agg backend): the residual of one window after a
few removal steps, the energy removed after each step for every window, and one window's vectors.
"""
import numpy as np

from sparse_jax.report.page import PAGE_WIDTH_PX

# The residual view's dB range below the window input's loudest bin.
RESIDUAL_DB_RANGE = 80.0


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path):
  fig.savefig(path, dpi=100)
  _pyplot().close(fig)


def residual_png(path, residuals_SxFxH, labels, sample_rate, hop, title):
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


def energy_png(path, shares_WxS1, kept_W, chosen, chosen_label):
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


def vectors_png(path, vectors_ExD, title):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(PAGE_WIDTH_PX / 100, 3.4), layout="constrained")
  if len(vectors_ExD):
    image = ax.imshow(vectors_ExD, cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="value (network output, no unit)")
  ax.set_xlabel("vector dimension")
  ax.set_ylabel("event (removal order)")
  ax.set_title(title, fontsize=10)
  _save(fig, path)
