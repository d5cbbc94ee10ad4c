"""A trained checkpoint as a codec: streaming encode of audio of any length, and decode.

The model analyses windows of `n_samples` (2^17 at full size, N = n_samples // hop frames) and only
chooses events in the FIRST half of a window.  A file of any length is therefore encoded by sliding
the window by half its length (2^16 samples) over one shared magnitude spectrogram of the file:

  1. The window's spectrogram is the shared one at frames [s, s + N).
  2. The removal loop runs on it, scaled to the level the model was trained at (training divides
     every segment by its positive peak; here the window's audio peak sets the scale, and the
     gains are divided by it again), for a fixed number of steps or until the first-half residual
     share falls below a threshold.
  3. The events are snapped to what a `.sjx` file stores (8-bit vectors by default), rendered at
     unit gain, and their gains refit (`gains.py`): non-negative least squares on the window's
     first half, then events that only add L1 error are dropped, then the whole window is scaled
     by the alpha in [0, 1] that makes the DECODED audio's spectral L1 error (on the mixed audio,
     at the model's STFT and at 2048/256) smallest without raising it.  Adding a window therefore
     never makes the decoded file worse: for any input, explained >= 0, and each window's step
     is <= 0 (`EncodeInfo.decoded_l1_*`).
  4. The window's spectrogram minus its events' (refit) spectrograms is WRITTEN BACK into the
     shared spectrogram, so the next window (whose first half is this window's second half)
     already has these events' tails removed.
  5. Each event is recorded with its absolute frame s + k, its gain, fine offset and vector.

Windows continue until every frame of the input lies in some window's first half; the end of the
file is zero-padded (so a file shorter than one window is one padded window).  Only the part of the
shared spectrogram that the next window still reads is kept: a rolling (F, N) buffer whose first
half is the previous window's residual and whose second half is computed from the audio when the
window arrives.  That is the same computation as one whole-file spectrogram with write-back, with
spectrogram memory bounded by one window whatever the file's length (the audio itself, and the
audio decoded so far for step 3's check, are held whole: 12 bytes per sample).

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
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparse_jax import audio_io, metrics
from sparse_jax import progress as progress_lib
from sparse_jax.codec import events as events_lib
from sparse_jax.codec import gains as gains_lib
from sparse_jax.codec import sjx
from sparse_jax.errors import UserError
from sparse_jax.geometry import Geometry

# Events rendered per decoder call: one compiled shape; a short last batch is padded with silent
# (gain 0) events.
RENDER_BATCH = 32

# Besides the model's own STFT, adding a window must not raise the decoded error at the STFT the
# benchmarks report (window 2048, hop 256; the same one at full size).
REPORTED_STFT = (2048, 256)
# A window whose positive peak is below this share of its absolute peak is scaled by the absolute
# peak instead: the positive peak of a lopsided window (a DC offset, a negative click) can be ~0.
_LOPSIDED = 0.25

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
    scale_W: float64 (W,), the factor the window's spectrogram was multiplied by for the model
      (1 / its positive peak; 0 for a silent window, which the model never sees).
    alpha_W: float64 (W,), the final scale of the window's refit gains (0: the window was left out).
    resolutions: the (window, hop) STFTs of the decoded-error check, the model's first.
    decoded_l1_before_WxV, decoded_l1_after_WxV: float64 (W, V), the decoded file's spectral L1
      error (sum of ||S(x)| - |S(y)||) on the frames that window w's audio touches, before and
      after adding its events; after <= before, always.
    seconds: wall-clock time of the encode (refinement included).
    refine: with `encode(refine=N)`, a `refine.RefineInfo` (what refinement changed), else None.
    decoded_rms: the RMS of the audio the returned events decode to (at the model's rate): what
      the file's level is measured against (`api.encode`).
  """
  window_starts_W: np.ndarray
  initial_l1_W: np.ndarray
  shares_WxS1: np.ndarray
  kept_W: np.ndarray
  event_window_E: np.ndarray
  event_step_E: np.ndarray
  scale_W: np.ndarray = None
  alpha_W: np.ndarray = None
  resolutions: tuple = ()
  decoded_l1_before_WxV: np.ndarray = None
  decoded_l1_after_WxV: np.ndarray = None
  seconds: float = 0.0
  refine: object = None
  decoded_rms: float = 0.0


@dataclasses.dataclass
class WindowTrace:
  """One window as the streaming encoder saw it: what `encode(window_hook=...)` receives.

  Attributes:
    w: the window's index.
    start: its first frame in the file.
    spec_in_FxN: its input |STFT| (the previous window's write-back in the first half).
    residual_FxN: what it writes back: the input minus its kept events' spectra.
    event_specs_KxFxN: each kept event's |STFT| at its final gain (K kept events; their sum is
      spec_in_FxN - residual_FxN).
    steps_K: the removal step each kept event came from.
  """
  w: int
  start: int
  spec_in_FxN: np.ndarray
  residual_FxN: np.ndarray
  event_specs_KxFxN: np.ndarray
  steps_K: np.ndarray


class Progress:
  """A bar counting to `total` (`update(done)` takes the count so far) on tqdm (progress.py).

  The first unit usually carries JAX's compilation, so the rate and ETA count from after it.
  """

  def __init__(self, total: int, label: str, enabled: bool = True, unit: str = "it"):
    self.bar = progress_lib.bar(max(int(total), 1), label, enabled=enabled, unit=unit)
    self._first = True

  def update(self, done: int):
    self.bar.update(max(int(done) - self.bar.n, 0))
    if self._first and done > 0:
      self._first = False
      progress_lib.restart_clock(self.bar)

  def close(self):
    self.bar.close()


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
  """The model config with remat off (no gradients here): a copy, the codec's config unchanged."""
  model_cfg = cfg.model.copy_and_resolve_references()
  model_cfg.remat = False
  return model_cfg


def _make_window_fn(graphs, cfg, n_steps: int):
  """The jitted removal loop on one window: (params, consts, spec_1xFxN, threshold) -> dict.

  One compiled function serves the fixed count (threshold < 0) and the threshold rule: the loop
  always runs every step, and the rule only picks how many of them are kept.
  """
  from sparse_jax import model as model_lib  # pylint: disable=g-import-not-at-top
  mcfg = _inference_cfg(cfg)
  half = Geometry.of(mcfg).half

  def fn(g_params, g_consts, spec_1xFxN, threshold):
    model = nnx.merge(graphs.g_graph, g_params, g_consts)
    dec = model_lib.decompose(model, spec_1xFxN, mcfg, n_events=n_steps)
    initial = jnp.abs(spec_1xFxN[0, :, :half]).sum()
    safe = jnp.where(initial > 0, initial, 1.0)
    # A silent window has share 0 throughout (nothing to remove), never NaN.
    shares_S = jnp.where(initial > 0, dec.residual_l1_BxE[0] / safe, 0.0)
    shares_S1 = jnp.concatenate([jnp.where(initial > 0, 1.0, 0.0)[None], shares_S])
    # Keep events until the share first drops below the threshold: k = the first index of
    # shares_S1 below it (0: the window is already below, no events), else all steps.
    below = shares_S1 < threshold
    k = jnp.where(below.any(), jnp.argmax(below), n_steps).astype(jnp.int32)
    return dict(vectors=dec.vectors_BxExD[0], frames=dec.frames_BxE[0], gains=dec.gains_BxE[0],
                fine=dec.fine_BxE[0], shares=shares_S1, initial=initial, kept=k)

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


def _level_scale(audio_T: np.ndarray) -> float:
  """The factor that brings a window to the level the model was trained at; 0 for silence.

  Training divides every segment by its positive peak (data/segments.py), so the model has only
  seen windows whose largest sample is 1.  A lopsided window (a DC offset, a negative click) is
  divided by its absolute peak instead, so a ~0 positive peak cannot blow it up.
  """
  top = float(np.abs(audio_T).max()) if audio_T.size else 0.0
  if top == 0.0:
    return 0.0
  return 1.0 / max(float(audio_T.max()), _LOPSIDED * top)


def _snap_to_file(vectors_KxD, offsets_K, hop: int, bits: int | None):
  """The vectors and offsets a `.sjx` file of `bits` stores for these (None: unchanged).

  The writer's own quantisers (sjx.py), so the encoder checks the audio the file decodes to.
  Re-quantising a snapped vector can move its per-event scale once (the scale is the float16 just
  above max|v| / Q), so it is applied until nothing changes, which makes the file's round trip
  of the result exact.
  """
  vectors_KxD = np.asarray(vectors_KxD, np.float32)
  offsets_K = np.asarray(offsets_K, np.float32)
  if bits is None or not vectors_KxD.size:
    return vectors_KxD, offsets_K
  # pylint: disable=protected-access
  for _ in range(4):
    scales_K = sjx._vector_scales(vectors_KxD, bits)
    snapped = sjx._dequantise_vectors(sjx._quantise_vectors(vectors_KxD, scales_K, bits), scales_K)
    if np.array_equal(snapped, vectors_KxD):
      break
    vectors_KxD = snapped
  offsets_K = sjx._dequantise_offsets(sjx._quantise_offsets(offsets_K, hop), hop)
  return vectors_KxD, offsets_K


def _file_gains(gains_K) -> np.ndarray:
  """The gains a `.sjx` file stores (float16), as float64."""
  return sjx._quantise_gains(np.asarray(gains_K)).astype(np.float64)  # pylint: disable=protected-access


class Codec:
  """A trained generator used as a codec: `encode(audio) -> EventSet`, `decode(EventSet) -> audio`.

  Build it with `Codec.from_workdir(workdir)` (the latest checkpoint of a training run) or
  `Codec(cfg, graphs, g_params, model_id)`.
  """

  def __init__(self, cfg, graphs, g_params, model_id: bytes, step: int | None = None):
    self.cfg = cfg
    self.step = step  # the training step of the parameters, where known
    self.graphs = graphs
    self.g_params = g_params
    self.model_id = bytes(model_id)
    m = cfg.model
    self.sample_rate = int(m.sample_rate)
    self.n_samples = int(m.n_samples)
    self.window = int(m.window)
    self.hop = int(m.hop)
    geo = Geometry.of(m)
    self.n_frames, self.half, self.n_bins = geo.n_frames, geo.half, geo.n_bins
    self.event_dim = int(m.event_dim)
    self.default_events = int(m.n_events)
    self._key = _model_cfg_key(cfg)

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None) -> "Codec":
    """Loads the generator of the latest (or the given) checkpoint of a training workdir (only its
    arrays are read: no optimiser or discriminator state).

    Raises:
      UserError: no workdir, no config, no checkpoint, or a checkpoint that cannot be restored.
    """
    from sparse_jax import checkpoint  # pylint: disable=g-import-not-at-top
    if not os.path.isdir(workdir):
      raise UserError(f"model {workdir!r} does not exist: pass a training workdir or an exported "
                      "generator file (.npz)")
    try:
      with _quiet_library_logs():
        cfg, graphs, g_params, model_id, step = checkpoint.restore_generator(workdir, step)
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and the config loader raise many types for damaged files; a user sees one line.
      first = (str(e).splitlines() or [""])[0][:200]
      raise UserError(f"cannot load the model in {workdir!r} ({type(e).__name__}: {first}); "
                      "the checkpoint or config.json is damaged or from another version: "
                      "retrain it or use another model") from None
    return cls(cfg, graphs, g_params, model_id, step)

  @classmethod
  def from_generator_file(cls, path: str) -> "Codec":
    """Loads an exported generator (`python -m sparse_jax export`, the shipped model): no
    optimiser and no discriminator state are read or built.

    Raises:
      UserError: missing, damaged or foreign file.
    """
    from sparse_jax import generator  # pylint: disable=g-import-not-at-top
    with _quiet_library_logs():
      cfg, graphs, g_params, model_id, step = generator.load(path)
    return cls(cfg, graphs, g_params, model_id, step)

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
    initial (), kept () the number of kept steps.
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
    return events_lib.stream_windows(n_audio_samples, self.hop, self.n_samples)

  def resolutions(self) -> tuple:
    """The (window, hop) STFTs at which a window may not raise the decoded error, model's first."""
    own = (self.window, self.hop)
    return (own,) if own == REPORTED_STFT else (own, REPORTED_STFT)

  def encode(self, audio_T, *, n_events: int | None = None,
             residual_threshold: float | None = None, bits: int | None = 8,
             progress: bool = False, return_info: bool = False, window_hook=None,
             refine: int = 0):
    """Streams audio of any length through the model.

    Args:
      audio_T: float mono samples at the model's sample rate (T >= 1).
      n_events: removal steps per window (default the config's `n_events`).  With
        `residual_threshold` it is the most events per window.
      residual_threshold: if given, a window keeps events until its first-half residual L1 share
        (residual L1 / the window's initial first-half L1) falls below this value.
      bits: the `.sjx` vector width the events will be written at (8 or 16): vectors and offsets
        are snapped to that file's grid before the gains are fit and checked, so the written file
        decodes to exactly the audio the encoder checked.  None: keep the exact values (the check
        then holds for `decode` of the returned EventSet, and for a file up to its rounding).
      progress: draw a progress bar on stderr (for files of more than two windows).
      return_info: also return an `EncodeInfo` (per-window, per-step residual shares).
      window_hook: optional callable(WindowTrace), called after each window with copies of its
        input spectrogram, the residual it writes back and its kept events' spectra: what the
        encoder computed, for a caller that shows the removal step by step (the report).
      refine: Adam steps of encode-time refinement per window (0: none; refine.py): the events
        above are the starting point, each window's events are optimised against the decoded
        audio and kept only where they decode no worse than the plain ones.

    Returns:
      The EventSet (events in window order, then removal order; events whose refit gain is 0 or
      that start after the end of the audio are left out: they make no sound), and the EncodeInfo
      if asked.

    Raises:
      UserError: empty or non-finite audio, or a bad event count / threshold / bits.
    """
    t0 = time.time()
    audio_T = np.asarray(audio_T, np.float32).reshape(-1)
    if audio_T.size == 0:
      raise UserError("the audio is empty; pass a recording with at least one sample")
    if not np.all(np.isfinite(audio_T)):
      raise UserError("the audio holds NaN or infinite samples; fix or re-export the file")
    n_steps = self.default_events if n_events is None else int(n_events)
    if not 1 <= n_steps <= events_lib.MAX_EVENTS_PER_WINDOW:
      raise UserError(f"events per window must be between 1 and "
                      f"{events_lib.MAX_EVENTS_PER_WINDOW}, got {n_steps}")
    if residual_threshold is not None and not (math.isfinite(residual_threshold) and
                                               0 <= residual_threshold <= 1):
      raise UserError(f"the residual threshold must be in [0, 1] (a share of the window's energy), "
                      f"got {residual_threshold}")
    from sparse_jax.codec import refine as refine_lib  # pylint: disable=g-import-not-at-top
    refine = refine_lib.check_steps(refine)
    if bits is not None and bits not in sjx.SUPPORTED_BITS:
      raise UserError(f"bits must be one of {sjx.SUPPORTED_BITS}, got {bits}")
    n_in, n_windows = self.windows_for(audio_T.size)
    # Enough zeros for the last window and the STFT frames that reach past its end (at the
    # model's STFT and at the reported one).
    padded_len = ((n_windows - 1) * self.half * self.hop + self.n_samples
                  + max(self.window, REPORTED_STFT[0]))
    padded_T = np.zeros(padded_len, np.float32)
    padded_T[:audio_T.size] = audio_T
    # What `decode` will output, window by window: the decoded-error check compares against it.
    decoded_T = np.zeros(padded_len, np.float64)
    resolutions = self.resolutions()

    half = self.half
    spec_FxN = np.empty((self.n_bins, self.n_frames), np.float32)
    spec_FxN[:, :half] = _host_stft(padded_T, 0, half, self.window, self.hop)
    bar = Progress(n_windows, "encoding", enabled=progress and n_windows > 2, unit="window")
    columns = {k: [] for k in ("frames", "gains", "fine", "vectors", "window", "step")}
    rows = {k: [] for k in ("start", "initial", "shares", "kept", "scale", "alpha", "before",
                            "after")}
    for w in range(n_windows):
      start = w * half
      spec_FxN[:, half:] = _host_stft(padded_T, start + half, self.n_frames - half,
                                      self.window, self.hop)
      # The samples this window's frames read.
      read_T = padded_T[start * self.hop:(start + self.n_frames - 1) * self.hop + self.window]
      scale = _level_scale(read_T)
      if scale > 0:
        out = self.run_window(spec_FxN * np.float32(scale), n_steps, residual_threshold)
        window = self._fit_window(out, start, n_in, audio_T.size, spec_FxN, padded_T,
                                  decoded_T, bits, resolutions)
        k, initial, shares = int(out["kept"]), float(out["initial"]) / scale, out["shares"]
      else:
        # Nothing in the audio this window reads: nothing an event could explain, so the model is
        # not run (its events could only add sound to silence).
        window = self._empty_window(spec_FxN, start, audio_T.size, padded_T, decoded_T,
                                    resolutions)
        k, initial = 0, float(np.abs(spec_FxN[:, :half]).sum())
        shares = np.full(n_steps + 1, 1.0 if initial > 0 else 0.0)
      if window_hook is not None:
        window_hook(WindowTrace(w, start, spec_FxN.copy(), window["residual"].copy(),
                                window["event_specs"](), window["step"]))
      for name in ("frames", "gains", "fine", "vectors", "step"):
        columns[name].append(window[name])
      columns["window"].append(np.full(window["frames"].size, w, np.int64))
      for name, value in (("start", start), ("initial", initial), ("kept", k), ("scale", scale),
                          ("shares", np.asarray(shares, np.float64)), ("alpha", window["alpha"]),
                          ("before", window["before"]), ("after", window["after"])):
        rows[name].append(value)
      # The write-back: the next window's first half is this window's residual second half.
      spec_FxN[:, :half] = window["residual"][:, half:]
      bar.update(w + 1)
    bar.close()

    cat = lambda name, dtype: np.concatenate(columns[name]).astype(dtype)
    events = events_lib.EventSet(
        frames=cat("frames", np.int64), offsets=cat("fine", np.float32),
        gains=cat("gains", np.float32),
        vectors=np.concatenate(columns["vectors"]).reshape(-1, self.event_dim),
        sample_rate=self.sample_rate, hop=self.hop, window_samples=self.n_samples,
        n_audio_samples=int(audio_T.size), model_id=self.model_id, events_per_window=n_steps)
    info = EncodeInfo(
        window_starts_W=np.asarray(rows["start"], np.int64),
        initial_l1_W=np.asarray(rows["initial"]), shares_WxS1=np.stack(rows["shares"]),
        kept_W=np.asarray(rows["kept"], np.int64), event_window_E=cat("window", np.int64),
        event_step_E=cat("step", np.int64), scale_W=np.asarray(rows["scale"]),
        alpha_W=np.asarray(rows["alpha"]), resolutions=resolutions,
        decoded_l1_before_WxV=np.stack(rows["before"]),
        decoded_l1_after_WxV=np.stack(rows["after"]), seconds=time.time() - t0,
        decoded_rms=audio_io.rms(decoded_T[:audio_T.size]))
    if refine:
      events, info = refine_lib.refine(self, audio_T, events, info, refine, bits=bits,
                                       progress=progress)
    return (events, info) if return_info else events

  def _fit_window(self, out, start, n_in, n_audio, spec_FxN, padded_T, decoded_T, bits,
                  resolutions) -> dict:
    """One window's events after the loop: snapped, rendered, gains refit and checked.

    Adds the window's audio to `decoded_T` and returns its kept events (absolute frames) and the
    residual to write back.
    """
    half, k = self.half, int(out["kept"])
    relative_K = out["frames"][:k].astype(np.int64)
    candidate = (out["gains"][:k] > 0) & (start + relative_K < n_in)
    step_K = np.flatnonzero(candidate)
    relative_K = relative_K[step_K]
    vectors_KxD, offsets_K = _snap_to_file(
        out["vectors"][step_K].reshape(-1, self.event_dim),
        np.clip(out["fine"][step_K], -self.hop, self.hop), self.hop, bits)
    if step_K.size == 0:
      return self._empty_window(spec_FxN, start, n_audio, padded_T, decoded_T, resolutions)
    unit_KxT = self.render(vectors_KxD, relative_K, np.ones(step_K.size, np.float32),
                           offsets_K).astype(np.float64)
    specs_KxFxN = np.stack([metrics.stft_magnitude(u, self.window, self.hop) for u in unit_KxT])
    target_FxH = spec_FxN[:, :half]
    gains_K = gains_lib.fit_gains(target_FxH, specs_KxFxN[:, :, :half])
    gains_K = gains_lib.prune(target_FxH, specs_KxFxN[:, :, :half], gains_K)
    a = start * self.hop
    check = gains_lib.SafeScale(padded_T, decoded_T, gains_lib.mix(gains_K, unit_KxT), a, n_audio, resolutions)
    alpha = check.best_alpha()
    # The file stores gains as float16: check the gains it will hold, not alpha * gains.
    final_K = _file_gains(alpha * gains_K) if alpha > 0 else np.zeros(step_K.size)
    contribution_T = gains_lib.mix(final_K, unit_KxT)
    after = check.errors_with(contribution_T)
    if alpha > 0 and not check.acceptable(after[None])[0]:
      final_K[:] = 0.0
      contribution_T[:] = 0.0
      alpha, after = 0.0, check.before
    decoded_T[a:a + self.n_samples] += contribution_T
    keep = final_K > 0
    residual_FxN = (spec_FxN - np.einsum("k,kfn->fn", final_K, specs_KxFxN)).astype(np.float32)
    return dict(frames=start + relative_K[keep], gains=final_K[keep].astype(np.float32),
                fine=offsets_K[keep], vectors=vectors_KxD[keep], step=step_K[keep].astype(np.int64),
                residual=residual_FxN, alpha=alpha, before=check.before, after=after,
                # Built only for a window_hook: not every encode pays for K spectra per window.
                event_specs=lambda: (final_K[keep, None, None] * specs_KxFxN[keep]).astype(
                    np.float32))

  def _empty_window(self, spec_FxN, start, n_audio, padded_T, decoded_T, resolutions) -> dict:
    """A window that keeps no event: its input is written back as it is."""
    check = gains_lib.SafeScale(padded_T, decoded_T, np.zeros(self.n_samples), start * self.hop,
                                n_audio, resolutions)
    return dict(frames=np.zeros(0, np.int64), gains=np.zeros(0, np.float32),
                fine=np.zeros(0, np.float32), vectors=np.zeros((0, self.event_dim), np.float32),
                step=np.zeros(0, np.int64), residual=spec_FxN.copy(), alpha=0.0,
                before=check.before, after=check.before,
                event_specs=lambda: np.zeros((0,) + spec_FxN.shape, np.float32))

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
    # Silent events (gain 0: the file's fillers of silence) render nothing: not rendered at all.
    events = events.select(events.gains > 0)
    if len(events) == 0:
      return np.zeros(n_out, np.float32)
    window_E = self.window_of(events.frames)
    relative_E = events.frames - window_E * self.half
    starts_E = window_E * self.half * self.hop
    out_T = np.zeros(max(n_out, int(starts_E.max()) + self.n_samples), np.float32)
    # Counted in windows, as the encoder counts them (events.n_windows), though rendered in batches.
    n_windows = events.n_windows
    bar = Progress(n_windows, "decoding", enabled=progress and len(events) > 4 * RENDER_BATCH,
                   unit="window")
    for lo in range(0, len(events), RENDER_BATCH):
      sl = slice(lo, lo + RENDER_BATCH)
      audio_BxT = self.render(events.vectors[sl], relative_E[sl], events.gains[sl],
                              events.offsets[sl])
      for start, audio in zip(starts_E[sl], audio_BxT):
        out_T[start:start + self.n_samples] += audio
      bar.update(n_windows * min(lo + RENDER_BATCH, len(events)) // len(events))
    bar.close()
    return out_T[:n_out]
