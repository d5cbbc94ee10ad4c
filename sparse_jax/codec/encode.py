"""The streaming encoder: audio of any length -> events, one window at a time.

The model analyses windows of `n_samples` (2^17 at full size, N = n_samples // hop frames) and only
chooses events in the FIRST half of a window.  A file of any length is therefore encoded by sliding
the window by half its length over one shared magnitude spectrogram of the file:

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

The model itself (loading, compiled functions, rendering, decoding) is `runtime.Codec`; this module
only drives it.  Refinement (`refine.py`) starts from what this returns: `api.encode` runs it.
"""
import dataclasses
import math
import time

import numpy as np

from sparse_jax import audio_io, metrics
from sparse_jax import progress as progress_lib
from sparse_jax.codec import events as events_lib
from sparse_jax.codec import gains as gains_lib
from sparse_jax.codec import onsets as onsets_lib
from sparse_jax.codec import sjx
from sparse_jax.errors import UserError

# Besides the model's own STFT, adding a window must not raise the decoded error at the STFT the
# benchmarks report (window 2048, hop 256; the same one at full size).
REPORTED_STFT = (2048, 256)
# A window whose positive peak is below this share of its absolute peak is scaled by the absolute
# peak instead: the positive peak of a lopsided window (a DC offset, a negative click) can be ~0.
_LOPSIDED = 0.25


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
    refine: after `refine.refine` (`api.encode(refine=N)`), a `refine.RefineInfo` (what
      refinement changed), else None.
    decoded_rms: the RMS of the audio the returned events decode to (at the model's rate): what
      the file's level is measured against (`api.encode`).
  """
  window_starts_W: np.ndarray
  initial_l1_W: np.ndarray
  shares_WxS1: np.ndarray
  kept_W: np.ndarray
  event_window_E: np.ndarray
  event_step_E: np.ndarray
  scale_W: np.ndarray | None = None
  alpha_W: np.ndarray | None = None
  resolutions: tuple = ()
  decoded_l1_before_WxV: np.ndarray | None = None
  decoded_l1_after_WxV: np.ndarray | None = None
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


def _host_stft(audio_T: np.ndarray, start_frame: int, n: int, window: int, hop: int) -> np.ndarray:
  """|STFT| frames [start_frame, start_frame + n) of (already zero-padded) audio, float32 (F, n).

  The codec's STFT (periodic Hann, ortho rfft, no centring; frame t covers samples
  [hop t, hop t + window)), computed in numpy: no compilation per file length.
  """
  seg = audio_T[start_frame * hop:start_frame * hop + n * hop + window]
  return metrics.stft_magnitude(seg, window, hop)[:, :n].astype(np.float32)


def level_scale(audio_T: np.ndarray) -> float:
  """The factor that brings a window to the level the model was trained at; 0 for silence.

  Training divides every segment by its positive peak (data/segments.py), so the model has only
  seen windows whose largest sample is 1.  A lopsided window (a DC offset, a negative click) is
  divided by its absolute peak instead, so a ~0 positive peak cannot blow it up.
  """
  top = float(np.abs(audio_T).max()) if audio_T.size else 0.0
  if top == 0.0:
    return 0.0
  return 1.0 / max(float(audio_T.max()), _LOPSIDED * top)


def _resolutions(codec) -> tuple:
  """The (window, hop) STFTs at which a window may not raise the decoded error, model's first."""
  own = (codec.window, codec.hop)
  return (own,) if own == REPORTED_STFT else (own, REPORTED_STFT)



def encode(codec, audio_T, *, n_events: int | None = None,
           residual_threshold: float | None = None, bits: int | None = 8,
           at_onsets: bool | None = None, progress: bool = False, return_info: bool = False,
           window_hook=None):
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
    at_onsets: events start only within `onsets.RADIUS_SECONDS` of an onset that librosa detects
      in the audio (`codec/onsets.py`); a window with none keeps no event.  None (default): on
      for a model trained with the rule (`loss.events_at_onsets`), off for any other.
    progress: draw a progress bar on stderr (for files of more than two windows).
    return_info: also return an `EncodeInfo` (per-window, per-step residual shares).
    window_hook: optional callable(WindowTrace), called after each window with copies of its
      input spectrogram, the residual it writes back and its kept events' spectra: what the
      encoder computed, for a caller that shows the removal step by step (the report).

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
  n_steps = codec.default_events if n_events is None else int(n_events)
  if not 1 <= n_steps <= events_lib.MAX_EVENTS_PER_WINDOW:
    raise UserError(f"events per window must be between 1 and "
                    f"{events_lib.MAX_EVENTS_PER_WINDOW}, got {n_steps}")
  if residual_threshold is not None and not (math.isfinite(residual_threshold) and
                                             0 <= residual_threshold <= 1):
    raise UserError(f"the residual threshold must be in [0, 1] (a share of the window's energy), "
                    f"got {residual_threshold}")
  if bits is not None and bits not in sjx.SUPPORTED_BITS:
    raise UserError(f"bits must be one of {sjx.SUPPORTED_BITS}, got {bits}")
  n_in, n_windows = codec.windows_for(audio_T.size)
  # Enough zeros for the last window and the STFT frames that reach past its end (at the
  # model's STFT and at the reported one).
  padded_len = ((n_windows - 1) * codec.half * codec.hop + codec.n_samples
                + max(codec.window, REPORTED_STFT[0]))
  padded_T = np.zeros(padded_len, np.float32)
  padded_T[:audio_T.size] = audio_T
  # What `decode` will output, window by window: the decoded-error check compares against it.
  decoded_T = np.zeros(padded_len, np.float64)
  resolutions = _resolutions(codec)

  half = codec.half
  if at_onsets is None:
    at_onsets = bool(codec.cfg.loss.events_at_onsets)
  onsets_O = (onsets_lib.onset_frames(audio_T, codec.sample_rate, codec.hop) if at_onsets
              else None)
  spec_FxN = np.empty((codec.n_bins, codec.n_frames), np.float32)
  spec_FxN[:, :half] = _host_stft(padded_T, 0, half, codec.window, codec.hop)
  bar = progress_lib.Progress(n_windows, "encoding", enabled=progress and n_windows > 2,
                             unit="window")
  columns: dict[str, list] = {k: [] for k in ("frames", "gains", "fine", "vectors", "window", "step")}
  rows: dict[str, list] = {k: [] for k in ("start", "initial", "shares", "kept", "scale", "alpha", "before",
                          "after")}
  for w in range(n_windows):
    start = w * half
    spec_FxN[:, half:] = _host_stft(padded_T, start + half, codec.n_frames - half,
                                    codec.window, codec.hop)
    # The samples this window's frames read.
    read_T = padded_T[start * codec.hop:(start + codec.n_frames - 1) * codec.hop + codec.window]
    scale = level_scale(read_T)
    if scale > 0:
      allowed_H = (None if onsets_O is None else onsets_lib.allowed_frames(
          onsets_O, start, half, onsets_lib.radius_frames(codec.sample_rate, codec.hop)))
      out = codec.run_window(spec_FxN * np.float32(scale), n_steps, residual_threshold,
                             allowed_H)
      window = _fit_window(codec, out, start, n_in, audio_T.size, spec_FxN, padded_T,
                                decoded_T, bits, resolutions)
      k, initial, shares = int(out["kept"]), float(out["initial"]) / scale, out["shares"]
    else:
      # Nothing in the audio this window reads: nothing an event could explain, so the model is
      # not run (its events could only add sound to silence).
      window = _empty_window(codec, spec_FxN, start, audio_T.size, padded_T, decoded_T,
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
      vectors=np.concatenate(columns["vectors"]).reshape(-1, codec.event_dim),
      sample_rate=codec.sample_rate, hop=codec.hop, window_samples=codec.n_samples,
      n_audio_samples=int(audio_T.size), model_id=codec.model_id, events_per_window=n_steps)
  info = EncodeInfo(
      window_starts_W=np.asarray(rows["start"], np.int64),
      initial_l1_W=np.asarray(rows["initial"]), shares_WxS1=np.stack(rows["shares"]),
      kept_W=np.asarray(rows["kept"], np.int64), event_window_E=cat("window", np.int64),
      event_step_E=cat("step", np.int64), scale_W=np.asarray(rows["scale"]),
      alpha_W=np.asarray(rows["alpha"]), resolutions=resolutions,
      decoded_l1_before_WxV=np.stack(rows["before"]),
      decoded_l1_after_WxV=np.stack(rows["after"]), seconds=time.time() - t0,
      decoded_rms=audio_io.rms(decoded_T[:audio_T.size]))
  return (events, info) if return_info else events


def _fit_window(codec, out, start, n_in, n_audio, spec_FxN, padded_T, decoded_T, bits,
                resolutions) -> dict:
  """One window's events after the loop: snapped, rendered, gains refit and checked.

  Adds the window's audio to `decoded_T` and returns its kept events (absolute frames) and the
  residual to write back.
  """
  half, k = codec.half, int(out["kept"])
  relative_K = out["frames"][:k].astype(np.int64)
  candidate = (out["gains"][:k] > 0) & (start + relative_K < n_in)
  step_K = np.flatnonzero(candidate)
  relative_K = relative_K[step_K]
  vectors_KxD, offsets_K = sjx.snap_to_file(
      out["vectors"][step_K].reshape(-1, codec.event_dim),
      np.clip(out["fine"][step_K], -codec.hop, codec.hop), codec.hop, bits)
  if step_K.size == 0:
    return _empty_window(codec, spec_FxN, start, n_audio, padded_T, decoded_T, resolutions)
  unit_KxT = codec.render(vectors_KxD, relative_K, np.ones(step_K.size, np.float32),
                         offsets_K).astype(np.float64)
  # Filled in place (a stack of K spectrograms was a second copy of them), and the first halves
  # made contiguous once for the fit and the pruning, which then reshape them without copying.
  specs_KxFxN = np.empty((step_K.size,) + spec_FxN.shape, np.float64)
  for spec, unit_T in zip(specs_KxFxN, unit_KxT):
    spec[...] = metrics.stft_magnitude(unit_T, codec.window, codec.hop)
  target_FxH = spec_FxN[:, :half]
  first_KxFxH = np.ascontiguousarray(specs_KxFxN[:, :, :half])
  gains_K = gains_lib.fit_gains(target_FxH, first_KxFxH)
  gains_K = gains_lib.prune(target_FxH, first_KxFxH, gains_K)
  a = start * codec.hop
  check = gains_lib.SafeScale(padded_T, decoded_T, gains_lib.mix(gains_K, unit_KxT), a, n_audio, resolutions)
  alpha = check.best_alpha()
  # The file stores gains as float16: check the gains it will hold, not alpha * gains.
  final_K = sjx.file_gains(alpha * gains_K) if alpha > 0 else np.zeros(step_K.size)
  contribution_T = gains_lib.mix(final_K, unit_KxT)
  after = check.errors_with(contribution_T)
  if alpha > 0 and not check.acceptable(after[None])[0]:
    final_K[:] = 0.0
    contribution_T[:] = 0.0
    alpha, after = 0.0, check.before
  decoded_T[a:a + codec.n_samples] += contribution_T
  keep = final_K > 0
  residual_FxN = (spec_FxN - np.einsum("k,kfn->fn", final_K, specs_KxFxN)).astype(np.float32)
  return dict(frames=start + relative_K[keep], gains=final_K[keep].astype(np.float32),
              fine=offsets_K[keep], vectors=vectors_KxD[keep], step=step_K[keep].astype(np.int64),
              residual=residual_FxN, alpha=alpha, before=check.before, after=after,
              # Built only for a window_hook: not every encode pays for K spectra per window.
              event_specs=lambda: (final_K[keep, None, None] * specs_KxFxN[keep]).astype(
                  np.float32))


def _empty_window(codec, spec_FxN, start, n_audio, padded_T, decoded_T, resolutions) -> dict:
  """A window that keeps no event: its input is written back as it is."""
  check = gains_lib.SafeScale(padded_T, decoded_T, np.zeros(codec.n_samples), start * codec.hop,
                              n_audio, resolutions)
  return dict(frames=np.zeros(0, np.int64), gains=np.zeros(0, np.float32),
              fine=np.zeros(0, np.float32), vectors=np.zeros((0, codec.event_dim), np.float32),
              step=np.zeros(0, np.int64), residual=spec_FxN.copy(), alpha=0.0,
              before=check.before, after=check.before,
              event_specs=lambda: np.zeros((0,) + spec_FxN.shape, np.float32))

