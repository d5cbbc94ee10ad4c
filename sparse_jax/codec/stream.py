"""A trained checkpoint as a codec: streaming encode of audio of any length, and decode.

The model analyses windows of `n_samples` (2^17 at full size, N = n_samples // hop frames) and only
chooses events in the FIRST half of a window.  A file of any length is therefore encoded by sliding
the window by half its length (2^16 samples) over one shared magnitude spectrogram of the file:

  1. The window's spectrogram is the shared one at frames [s, s + N).
  2. The removal loop runs on it (a fixed number of steps, or until the first-half residual share
     falls below a threshold).
  3. The final residual is WRITTEN BACK into the shared spectrogram, so the next window (whose first
     half is this window's second half) already has these events' tails removed.
  4. Each event is recorded with its absolute frame s + k, its gain, fine offset and vector.

Windows continue until every frame of the input lies in some window's first half; the end of the
file is zero-padded (so a file shorter than one window is one padded window).  Only the part of the
shared spectrogram that the next window still reads is kept: a rolling (F, N) buffer whose first
half is the previous window's residual and whose second half is computed from the audio when the
window arrives.  That is the same computation as one whole-file spectrogram with write-back, with
memory bounded by one window whatever the file's length.

Decoding renders each event exactly as the encoder saw it: at its frame RELATIVE to its window
(window start = (frame // half) * half, half = N // 2), through the decoder, truncated at that
window's end, then overlap-added at the window's start sample.

Compilation: one jitted function per shape (the removal loop on a (1, F, N) window, per step count
and stopping mode; the renderer on batches of `RENDER_BATCH` events).  The jitted functions are
shared between `Codec` instances of the same model config, so reloading a checkpoint does not
compile again.
"""
import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparse_jax import metrics
from sparse_jax.codec import events as events_lib
from sparse_jax.errors import UserError

# Events rendered per decoder call: one compiled shape; a short last batch is padded with silent
# (gain 0) events.
RENDER_BATCH = 32

# Jitted functions, keyed by (model config JSON, kind, static arguments).  Two Codecs of the same
# config have structurally identical graphs, so they can share the compiled code; parameters are
# arguments, never baked-in constants.
_JIT_CACHE = {}


@dataclasses.dataclass
class EncodeInfo:
  """What the streaming encoder saw, per window (W windows, S = removal steps per window).

  Attributes:
    window_starts_W: int64 (W,), the first frame of each window.
    initial_l1_W: float64 (W,), L1 of the window's first half before the first step (after the
      previous window's write-back).
    shares_WxS1: float64 (W, S + 1), first-half residual L1 / initial_l1 before step 0 (1, or 0 for
      a silent window) and after each step.  Steps past a window's stopping point are still listed
      (the loop computes them) but their events are not kept.
    kept_W: int64 (W,), removal steps kept per window (the stopping rule's choice).
    event_window_E: int64 (E,), window index of each event of the returned EventSet.
    event_step_E: int64 (E,), removal step of each event within its window.
    seconds: wall-clock time of the encode.
  """
  window_starts_W: np.ndarray
  initial_l1_W: np.ndarray
  shares_WxS1: np.ndarray
  kept_W: np.ndarray
  event_window_E: np.ndarray
  event_step_E: np.ndarray
  seconds: float = 0.0


class Progress:
  """A plain-text progress bar on a stream (stderr): `\\r`-redrawn on a terminal, else a line per
  10 %, so logs stay readable."""

  def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
    self.total, self.label = max(int(total), 1), label
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
    self.start = time.time()
    self.last_decile = -1

  def update(self, done: int):
    if not self.enabled:
      return
    frac = min(done / self.total, 1.0)
    elapsed = time.time() - self.start
    eta = elapsed / frac - elapsed if frac > 0 else 0.0
    bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
    text = f"{self.label} [{bar}] {done}/{self.total} {100 * frac:3.0f}% eta {eta:5.1f}s"
    if self.tty:
      self.stream.write("\r" + text)
      self.stream.flush()
    elif int(10 * frac) > self.last_decile:
      self.last_decile = int(10 * frac)
      self.stream.write(text + "\n")
      self.stream.flush()

  def close(self):
    if self.enabled and self.tty:
      self.stream.write("\n")
      self.stream.flush()


@contextlib.contextmanager
def _quiet_library_logs():
  """Silences Orbax's (absl) log records while restoring: a damaged checkpoint must reach the user
  as our one-line UserError, not as extra ERROR lines before it."""
  loggers = [logging.getLogger(name) for name in ("absl", "orbax")]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(logging.CRITICAL + 1)
  try:
    yield
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


def _model_cfg_key(cfg) -> str:
  return cfg.model.to_json(sort_keys=True)


def _inference_cfg(cfg):
  """The model config as a plain namespace for tracing, with remat off (no gradients here)."""
  values = cfg.model.to_dict()
  values["remat"] = False
  values["dilations"] = tuple(values["dilations"])
  return types.SimpleNamespace(**values)


def _make_window_fn(graphs, cfg, n_steps: int):
  """The jitted removal loop on one window: (params, consts, spec_1xFxN, threshold) -> dict.

  Every step's residual stays on the device so that the residual after the stopping step can be
  picked there (one compiled function serves the fixed count, threshold < 0, and the threshold
  rule); only that one (F, N) residual comes back to the host.
  """
  from sparse_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  mcfg = _inference_cfg(cfg)
  half = (mcfg.n_samples // mcfg.hop) // 2

  def fn(g_params, g_consts, spec_1xFxN, threshold):
    model = nnx.merge(graphs.g_graph, g_params, g_consts)
    dec = model_lib.decompose(model, spec_1xFxN, mcfg, keep_residuals=True, n_events=n_steps)
    initial = jnp.abs(spec_1xFxN[0, :, :half]).sum()
    safe = jnp.where(initial > 0, initial, 1.0)
    # A silent window has share 0 throughout (nothing to remove), never NaN.
    shares_S = jnp.where(initial > 0, dec.residual_l1_BxE[0] / safe, 0.0)
    shares_S1 = jnp.concatenate([jnp.where(initial > 0, 1.0, 0.0)[None], shares_S])
    # Keep events until the share first drops below the threshold: k = the first index of
    # shares_S1 below it (0: the window is already below, no events), else all steps.
    below = shares_S1 < threshold
    k = jnp.where(below.any(), jnp.argmax(below), n_steps).astype(jnp.int32)
    residual = jnp.where(k == 0, spec_1xFxN[0], dec.residuals_BxExFxN[0, jnp.maximum(k - 1, 0)])
    return dict(vectors=dec.vectors_BxExD[0], frames=dec.frames_BxE[0], gains=dec.gains_BxE[0],
                fine=dec.fine_BxE[0], shares=shares_S1, initial=initial, residual=residual,
                kept=k)

  return jax.jit(fn)


def _make_render_fn(graphs):
  """The jitted decoder on a batch: (params, consts, vectors, frames, gains, fine) -> (B, T)."""

  def fn(g_params, g_consts, vectors_BxD, frames_B, gains_B, fine_B):
    model = nnx.merge(graphs.g_graph, g_params, g_consts)
    audio_BxT, _ = model.decoder(vectors_BxD, frames_B, gains_B, fine_B)
    return audio_BxT

  return jax.jit(fn)


def _host_stft(audio_T: np.ndarray, start_frame: int, n: int, window: int, hop: int) -> np.ndarray:
  """|STFT| frames [start_frame, start_frame + n) of (already zero-padded) audio, float32 (F, n).

  The codec's STFT (periodic Hann, ortho rfft, no centring; frame t covers samples
  [hop t, hop t + window)), computed in numpy: no compilation per file length.
  """
  seg = audio_T[start_frame * hop:start_frame * hop + n * hop + window]
  return metrics.stft_magnitude(seg, window, hop)[:, :n].astype(np.float32)


class Codec:
  """A trained generator used as a codec: `encode(audio) -> EventSet`, `decode(EventSet) -> audio`.

  Build it with `Codec.from_workdir(workdir)` (the latest checkpoint of a training run) or
  `Codec(cfg, graphs, g_params, model_id)`.
  """

  def __init__(self, cfg, graphs, g_params, model_id: bytes):
    self.cfg = cfg
    self.graphs = graphs
    self.g_params = g_params
    self.model_id = bytes(model_id)
    m = cfg.model
    self.sample_rate = int(m.sample_rate)
    self.n_samples = int(m.n_samples)
    self.window = int(m.window)
    self.hop = int(m.hop)
    self.n_frames = self.n_samples // self.hop
    self.half = self.n_frames // 2
    self.n_bins = self.window // 2 + 1
    self.event_dim = int(m.event_dim)
    self.default_events = int(m.n_events)
    self._key = _model_cfg_key(cfg)

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None) -> "Codec":
    """Loads the latest (or the given) checkpoint of a training workdir.

    Raises:
      UserError: no workdir, no config, no checkpoint, or a checkpoint that cannot be restored.
    """
    from sparse_jax import checkpoint  # pylint: disable=g-import-not-at-top
    if not os.path.isdir(workdir):
      raise UserError(f"--workdir {workdir!r} does not exist: pass the workdir of a training run")
    try:
      with _quiet_library_logs():
        cfg, graphs, state, extra = checkpoint.restore_train_state(workdir, step)
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and the config loader raise many types for damaged files; a user sees one line.
      first = (str(e).splitlines() or [""])[0][:200]
      raise UserError(f"cannot load the model in {workdir!r} ({type(e).__name__}: {first}); "
                      "the checkpoint or config.json is damaged or from another version: "
                      "retrain or use another --workdir") from None
    return cls(cfg, graphs, state.g_params, extra["model_id"])

  # --------------------------------------------------------------------------------------------
  # Compiled pieces.

  def _cached(self, kind, *static):
    key = (self._key, kind) + static
    fn = _JIT_CACHE.get(key)
    if fn is None:
      if kind == "window":
        fn = _make_window_fn(self.graphs, self.cfg, *static)
      else:
        fn = _make_render_fn(self.graphs)
      _JIT_CACHE[key] = fn
    return fn

  def run_window(self, spec_FxN: np.ndarray, n_steps: int, threshold: float | None) -> dict:
    """The removal loop on one window's spectrogram (F, N); returns numpy arrays.

    Keys: vectors (S, D), frames (S,) relative to the window, gains (S,), fine (S,), shares (S+1,),
    initial (), residual (F, N) after the kept steps, kept () the number of kept steps.
    """
    fn = self._cached("window", int(n_steps))
    thr = np.float32(-1.0 if threshold is None else threshold)
    out = fn(self.g_params, self.graphs.g_consts, jnp.asarray(spec_FxN)[None], thr)
    return jax.tree.map(np.asarray, out)

  def render(self, vectors_ExD, frames_E, gains_E, fine_E) -> np.ndarray:
    """Renders events at frames RELATIVE to a window: float32 (E, n_samples), batched."""
    vectors_ExD = np.asarray(vectors_ExD, np.float32).reshape(-1, self.event_dim)
    n = vectors_ExD.shape[0]
    out = np.zeros((n, self.n_samples), np.float32)
    fn = self._cached("render")
    for lo in range(0, n, RENDER_BATCH):
      hi = min(lo + RENDER_BATCH, n)
      pad = RENDER_BATCH - (hi - lo)
      args = [np.asarray(x)[lo:hi] for x in (vectors_ExD, frames_E, gains_E, fine_E)]
      v = np.concatenate([args[0], np.zeros((pad, self.event_dim), np.float32)])
      f = np.concatenate([args[1].astype(np.int32), np.zeros(pad, np.int32)])
      g = np.concatenate([args[2].astype(np.float32), np.zeros(pad, np.float32)])
      s = np.concatenate([args[3].astype(np.float32), np.zeros(pad, np.float32)])
      audio = fn(self.g_params, self.graphs.g_consts, v, f, g, s)
      out[lo:hi] = np.asarray(audio)[:hi - lo]
    return out

  # --------------------------------------------------------------------------------------------
  # Encoding.

  def windows_for(self, n_audio_samples: int) -> tuple[int, int]:
    """(number of input frames ceil(T / hop), number of windows) for T samples of audio."""
    n_in = max(1, -(-int(n_audio_samples) // self.hop))
    return n_in, max(1, -(-n_in // self.half))

  def encode(self, audio_T, *, n_events: int | None = None,
             residual_threshold: float | None = None, progress: bool = False,
             return_info: bool = False, window_hook=None):
    """Streams audio of any length through the model.

    Args:
      audio_T: float mono samples at the model's sample rate (T >= 1).
      n_events: removal steps per window (default the config's `n_events`).  With
        `residual_threshold` it is the most events per window.
      residual_threshold: if given, a window keeps events until its first-half residual L1 share
        (residual L1 / the window's initial first-half L1) falls below this value.
      progress: draw a progress bar on stderr (for files of more than two windows).
      return_info: also return an `EncodeInfo` (per-window, per-step residual shares).
      window_hook: optional callable(w, start_frame, spec_in_FxN, residual_FxN), called after each
        window with copies of its input spectrogram and its final residual (for tests, figures).

    Returns:
      The EventSet (events in window order, then removal order; events with gain 0 or starting
      after the end of the audio are left out: they make no sound), and the EncodeInfo if asked.

    Raises:
      UserError: empty or non-finite audio, or a bad event count / threshold.
    """
    t0 = time.time()
    audio_T = np.asarray(audio_T, np.float32).reshape(-1)
    if audio_T.size == 0:
      raise UserError("the audio is empty; pass a recording with at least one sample")
    if not np.all(np.isfinite(audio_T)):
      raise UserError("the audio holds NaN or infinite samples; fix or re-export the file")
    n_steps = self.default_events if n_events is None else int(n_events)
    if not 1 <= n_steps <= events_lib.MAX_U16:
      raise UserError(f"--events must be between 1 and {events_lib.MAX_U16}, got {n_steps}")
    if residual_threshold is not None and not (math.isfinite(residual_threshold) and
                                               0 <= residual_threshold <= 1):
      raise UserError(f"--residual-threshold must be in [0, 1] (a share of the window's energy), "
                      f"got {residual_threshold}")
    n_in, n_windows = self.windows_for(audio_T.size)
    # Enough zeros for the last window and the STFT frames that reach past its end.
    padded_len = (n_windows - 1) * self.half * self.hop + self.n_samples + self.window
    padded_T = np.zeros(padded_len, np.float32)
    padded_T[:audio_T.size] = audio_T

    half = self.half
    spec_FxN = np.empty((self.n_bins, self.n_frames), np.float32)
    spec_FxN[:, :half] = _host_stft(padded_T, 0, half, self.window, self.hop)
    bar = Progress(n_windows, "encoding", enabled=progress and n_windows > 2)
    columns = {k: [] for k in ("frames", "gains", "fine", "vectors", "window", "step")}
    starts, initials, shares, kept = [], [], [], []
    for w in range(n_windows):
      start = w * half
      spec_FxN[:, half:] = _host_stft(padded_T, start + half, self.n_frames - half,
                                      self.window, self.hop)
      out = self.run_window(spec_FxN, n_steps, residual_threshold)
      if window_hook is not None:
        window_hook(w, start, spec_FxN.copy(), out["residual"].copy())
      k = int(out["kept"])
      absolute = start + out["frames"][:k].astype(np.int64)
      keep = (out["gains"][:k] > 0) & (absolute < n_in)
      columns["frames"].append(absolute[keep])
      columns["gains"].append(out["gains"][:k][keep])
      columns["fine"].append(out["fine"][:k][keep])
      columns["vectors"].append(out["vectors"][:k][keep])
      columns["window"].append(np.full(int(keep.sum()), w, np.int64))
      columns["step"].append(np.flatnonzero(keep).astype(np.int64))
      starts.append(start)
      initials.append(float(out["initial"]))
      shares.append(out["shares"].astype(np.float64))
      kept.append(k)
      # The write-back: the next window's first half is this window's residual second half.
      spec_FxN[:, :half] = out["residual"][:, half:]
      bar.update(w + 1)
    bar.close()

    cat = lambda name, dtype: np.concatenate(columns[name]).astype(dtype)
    fine = np.clip(cat("fine", np.float32), -self.hop, self.hop)
    events = events_lib.EventSet(
        frames=cat("frames", np.int64), offsets=fine, gains=cat("gains", np.float32),
        vectors=np.concatenate(columns["vectors"]).reshape(-1, self.event_dim),
        sample_rate=self.sample_rate, hop=self.hop, window_samples=self.n_samples,
        n_audio_samples=int(audio_T.size), model_id=self.model_id, events_per_window=n_steps)
    if not return_info:
      return events
    info = EncodeInfo(
        window_starts_W=np.asarray(starts, np.int64), initial_l1_W=np.asarray(initials),
        shares_WxS1=np.stack(shares), kept_W=np.asarray(kept, np.int64),
        event_window_E=cat("window", np.int64), event_step_E=cat("step", np.int64),
        seconds=time.time() - t0)
    return events, info

  # --------------------------------------------------------------------------------------------
  # Decoding.

  def check_compatible(self, events: events_lib.EventSet, ignore_model_id: bool = False):
    """UserError unless `events` were made by this model (id, rate, hop, window, dimension)."""
    if not ignore_model_id and events.model_id != self.model_id:
      raise UserError(f"the events were made by model {events.model_id.hex()[:12]}..., this "
                      f"checkpoint is {self.model_id.hex()[:12]}...: decode with the checkpoint "
                      "that encoded them")
    mine = (self.sample_rate, self.hop, self.n_samples, self.event_dim)
    theirs = (events.sample_rate, events.hop, events.window_samples, events.event_dim)
    if mine != theirs:
      raise UserError("the events do not fit this model (sample rate, hop, window, event size "
                      f"{theirs} vs {mine}): decode with the checkpoint that encoded them")

  def window_of(self, frames_E) -> np.ndarray:
    """The window index of events at absolute frames (the window whose first half holds them)."""
    return np.asarray(frames_E, np.int64) // self.half

  def decode(self, events: events_lib.EventSet, *, ignore_model_id: bool = False,
             progress: bool = False) -> np.ndarray:
    """Renders and overlap-adds the events: float32 audio of length `events.n_audio_samples`.

    Raises:
      UserError: the events come from another model (unless `ignore_model_id`) or do not fit it.
    """
    self.check_compatible(events, ignore_model_id)
    n_out = events.n_audio_samples
    if len(events) == 0:
      return np.zeros(n_out, np.float32)
    window_E = self.window_of(events.frames)
    relative_E = events.frames - window_E * self.half
    starts_E = window_E * self.half * self.hop
    out_T = np.zeros(max(n_out, int(starts_E.max()) + self.n_samples), np.float32)
    bar = Progress(-(-len(events) // RENDER_BATCH), "decoding",
                   enabled=progress and len(events) > 4 * RENDER_BATCH)
    for b, lo in enumerate(range(0, len(events), RENDER_BATCH)):
      sl = slice(lo, lo + RENDER_BATCH)
      audio_BxT = self.render(events.vectors[sl], relative_E[sl], events.gains[sl],
                              events.offsets[sl])
      for start, audio in zip(starts_E[sl], audio_BxT):
        out_T[start:start + self.n_samples] += audio
      bar.update(b + 1)
    bar.close()
    return out_T[:n_out]
