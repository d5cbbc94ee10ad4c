"""Representation health: do the events carry information, or are they one sound at many levels?

A codec whose event vectors all point one way decodes every event to the same sound, scaled by
its gain: neither interpretable nor a good codec.  These figures tell a healthy set of events from
a collapsed one (N events of D dimensions):

* `effective_rank`: exp of the entropy of the normalised singular values of the CENTRED vectors
  (Roy & Vetterli 2007): 1 when they vary along one direction only, D when along all equally.
* `mean_abs_cosine`: the mean |cos| between two different (uncentred) vectors: 1 when every event
  is the same vector scaled, about sqrt(2 / (pi D)) for independent random directions.
* `first_frames_share`: the share of events in the first 4 frames of their window (events that
  pile up at window starts are placed by the window, not by the music).
* `stacked_share` (given each event's window): the share of events on a frame that an earlier
  event of their window already took: the greedy loop's way of removing one loud onset in
  slivers, several events deep (docs/collapse.md, "stacked events").
* `centroid_spread_octaves`: the standard deviation of log2 of the events' spectral centroids
  (power spectrum).
* `duration_ms`: the median over events of the time in which an event emits the middle 80% of
  its energy (from 10% to 90% of its running sum of squares): how long the sounds last.
* per decoder table: `rows_used` (rows any event gives a non-zero weight) and `dominant_rows`
  (distinct rows that carry an event's largest weight).

The first two are pure `jnp` and run inside the jitted train step; the rest run on the host.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from sparse_jax.blocks import BLOCKS
from sparse_jax.signal import unit_norm

FIRST_FRAMES = 4

def _replicated(x_ExD: jax.typing.ArrayLike) -> jax.Array:
  """The whole set on every device.  Inside the sharded train step the events arrive split over
  the batch axis, and both figures mix every pair of rows (an SVD, an N x N product)."""
  x = jnp.asarray(x_ExD, jnp.float32)
  sharding = jax.typeof(x).sharding
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or mesh.empty or all(axis is None for axis in sharding.spec):
    return x
  return jax.sharding.reshard(x, PartitionSpec())


def effective_rank(vectors_ExD: jax.typing.ArrayLike) -> jax.Array:
  """exp(entropy of the normalised singular values of the centred vectors), in [1, D]."""
  x = _replicated(vectors_ExD)
  s = jnp.linalg.svd(x - x.mean(0, keepdims=True), compute_uv=False)
  p = s / jnp.maximum(s.sum(), 1e-30)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.exp(entropy)


def mean_abs_cosine(vectors_ExD: jax.typing.ArrayLike) -> jax.Array:
  """Mean |cosine| over the N (N - 1) ordered pairs of different vectors (zero vectors count 0)."""
  x = _replicated(vectors_ExD)
  n = x.shape[0]
  unit = unit_norm(x)
  cos = jnp.abs(unit @ unit.T)
  return (cos.sum() - jnp.trace(cos)) / max(n * (n - 1), 1)


def mean_squared_cosine(vectors_ExD: jax.Array) -> jax.Array:
  """(1 / N^2) sum over all pairs (itself included) of cos^2: 1 for one direction, 1 / D for
  directions spread evenly over the sphere.  A differentiable diversity penalty: it equals
  ||U^T U / N||_F^2 for the unit vectors U, a D x D product, so it costs nothing at any N and
  needs no pairwise matrix."""
  unit = unit_norm(_replicated(vectors_ExD))
  second_moment_DxD = unit.T @ unit / unit.shape[0]
  return jnp.sum(second_moment_DxD ** 2)


def spectral_centroids_hz(events_ExT: np.ndarray, sample_rate: int) -> np.ndarray:
  """The centroid of each event's power spectrum, in Hz (NaN for a silent event).

  Power, not magnitude: an event cut off by its window leaks energy into every bin, and the
  leakage falls off as 1/f in magnitude but 1/f^2 in power, so it barely moves the power centroid.
  """
  mag = np.abs(np.fft.rfft(np.asarray(events_ExT, np.float64), axis=-1)) ** 2
  freqs = np.fft.rfftfreq(events_ExT.shape[-1], 1.0 / sample_rate)
  total = mag.sum(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(total > 0, (mag * freqs).sum(-1) / total, np.nan)


def energy_durations_s(events_ExT: np.ndarray, sample_rate: int) -> np.ndarray:
  """Seconds from 10% to 90% of each event's running energy (NaN for a silent event)."""
  energy = np.cumsum(np.asarray(events_ExT, np.float64) ** 2, axis=-1)
  total = energy[:, -1:]
  with np.errstate(invalid="ignore", divide="ignore"):
    share = energy / total
  t10 = np.argmax(share >= 0.1, axis=-1)
  t90 = np.argmax(share >= 0.9, axis=-1)
  return np.where(total[:, 0] > 0, (t90 - t10) / sample_rate, np.nan)


def table_usage(head_outputs: dict) -> dict:
  """Rows used and dominant rows of each block's lookup tables, from the heads' raw outputs.

  Args:
    head_outputs: {block name: {head name: (N, ..., rows) raw outputs for N events}} (the ReLU
      that turns them into row weights is applied here); which head mixes which rows is the
      block's `lookups`.

  Returns:
    {block name: {rows' name: {'rows', 'rows_used', 'dominant_rows'}}}.
  """
  usage: dict = {}
  for block_name, outputs in head_outputs.items():
    for head, rows in getattr(BLOCKS.get(block_name), "lookups", {}).items():
      if head not in outputs:
        continue
      w = np.maximum(np.asarray(outputs[head], np.float64), 0.0)
      w = w.reshape(-1, w.shape[-1])  # every (event, channel) mixes its own weights
      active = w.max(-1) > 0
      usage.setdefault(block_name, {})[rows] = {
          "rows": int(w.shape[-1]), "rows_used": int(np.sum(w.max(0) > 0)),
          "dominant_rows": int(len(np.unique(np.argmax(w[active], -1))))}
  return usage


def summarize(vectors_ExD, frames_in_window_E, gains_E, events_ExT=None, sample_rate=None,
              head_outputs=None, windows_E=None) -> dict:
  """Every figure of the module docstring for one set of events (silent ones left out).

  Args:
    vectors_ExD: the events' vectors.
    frames_in_window_E: each event's frame, counted from the start of its window.
    gains_E: their gains; events with gain <= 0 make no sound and are left out.
    events_ExT: optional rendered audio of each event, for the spectral centroids.
    sample_rate: the audio's rate (with events_ExT).
    head_outputs: optional decoder head outputs for `vectors_ExD`, for the table usage.
    windows_E: optional index of each event's window, for the stacked share.
  """
  gains = np.asarray(gains_E)
  sounding = gains > 0
  vectors = np.asarray(vectors_ExD, np.float32)[sounding]
  frames = np.asarray(frames_in_window_E)[sounding]
  out: dict = {"events": int(sounding.sum()), "silent_events": int((~sounding).sum())}
  if len(vectors) < 2:
    return out
  out["effective_rank"] = float(effective_rank(vectors))
  out["mean_abs_cosine"] = float(mean_abs_cosine(vectors))
  out["first_frames_share"] = float(np.mean(frames < FIRST_FRAMES))
  if windows_E is not None:
    taken = {(w, f) for w, f in zip(np.asarray(windows_E)[sounding].tolist(), frames.tolist())}
    out["stacked_share"] = 1.0 - len(taken) / len(frames)
  if events_ExT is not None:
    centroids = spectral_centroids_hz(np.asarray(events_ExT)[sounding], sample_rate)
    centroids = centroids[np.isfinite(centroids) & (centroids > 0)]
    out["centroid_spread_octaves"] = float(np.std(np.log2(centroids))) if len(centroids) else 0.0
    durations = energy_durations_s(np.asarray(events_ExT)[sounding], sample_rate)
    durations = durations[np.isfinite(durations)]
    out["duration_ms"] = 1000 * float(np.median(durations)) if len(durations) else 0.0
  if head_outputs is not None:
    out["tables"] = table_usage(jax.tree.map(lambda v: np.asarray(v)[sounding], head_outputs))
  return out
