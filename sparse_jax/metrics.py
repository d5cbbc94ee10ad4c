"""Objective audio metrics, host-side in numpy (float64 inside).

Everything here compares a reference signal with an estimate of it:

- `multi_resolution_stft_distance`: spectral convergence + log-magnitude L1, averaged over FFT sizes
  (the definition used by Parallel-WaveGAN and auraloss), the standard codec metric.
- `log_mel_distance`: L1 between log10 mel spectrograms (Slaney mel bank, as librosa's default).
- `si_sdr`: scale-invariant signal-to-distortion ratio in dB.  Phase-sensitive, so a parametric
  codec scores low on it even when it sounds close; report it, don't optimise for it.
- `spectral_energy_curve`: the fraction of a target's STFT-magnitude L1 energy that each partial
  reconstruction removes, using the codec's own STFT (`stft_magnitude`), so that the codec's
  per-event removal curve and a baseline's per-atom curve are measured with the same ruler.
- `align`: integer-lag alignment, because classic codecs add delay (encoder look-ahead, padding).

All functions take 1-D float arrays (`*_T`); reference and estimate must have the same length (call
`align` first for codec output).
"""
from __future__ import annotations

import numpy as np
import scipy.signal

from sparse_jax.signal import hann_periodic

# Floor of the squared magnitude in the MR-STFT distance (Parallel-WaveGAN's clamp): silent bins
# get a finite, shared log value, and inaudible noise far below the signal does not dominate the
# log term.
_POWER_FLOOR = 1e-7
# Floor of the log-mel distance (the usual HiFi-GAN/vocoder value).
_MEL_EPS = 1e-5


def _as_signal(x_T, name: str) -> np.ndarray:
  x_T = np.asarray(x_T, dtype=np.float64)
  if x_T.ndim != 1:
    raise ValueError(f"{name} must be a 1-D signal, got shape {x_T.shape}")
  if x_T.size == 0:
    raise ValueError(f"{name} is empty")
  return x_T


def _pair(ref_T, est_T) -> tuple[np.ndarray, np.ndarray]:
  ref_T, est_T = _as_signal(ref_T, "ref_T"), _as_signal(est_T, "est_T")
  if ref_T.shape != est_T.shape:
    raise ValueError(f"ref_T and est_T differ in length ({ref_T.size} vs {est_T.size}); "
                     "crop them or use metrics.align first")
  return ref_T, est_T


def _frames(padded_T: np.ndarray, window: int, hop: int, n_frames: int) -> np.ndarray:
  """A read-only (n_frames, window) view of frames starting at hop * t."""
  view = np.lib.stride_tricks.sliding_window_view(padded_T, window)[::hop]
  return view[:n_frames]


def stft(audio_T, window: int = 2048, hop: int = 256) -> np.ndarray:
  """The codec's complex STFT, in numpy (the reference for the JAX one in `signal.py`).

  Periodic Hann of length `window`, `rfft(norm='ortho')`.  The signal is right-padded with `window`
  zeros and not centred: frame t covers samples [hop*t, hop*t + window).  The first len // hop
  frames are kept.

  Args:
    audio_T: (T,) signal.
    window: FFT / window size.
    hop: hop size.

  Returns:
    spec_FxN: (window // 2 + 1, T // hop) complex128.
  """
  audio_T = _as_signal(audio_T, "audio_T")
  n_frames = audio_T.size // hop
  padded_T = np.concatenate([audio_T, np.zeros(window)])
  frames_NxG = _frames(padded_T, window, hop, n_frames) * hann_periodic(window, np.float64)
  return np.fft.rfft(frames_NxG, axis=-1, norm="ortho").T


def stft_magnitude(audio_T, window: int = 2048, hop: int = 256) -> np.ndarray:
  """|`stft`|: (T,) -> (window // 2 + 1, T // hop) float64 magnitudes, the codec's spectrogram."""
  return np.abs(stft(audio_T, window, hop))


def _centred_stft(audio_T: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
  """STFT as `torch.stft(center=True, pad_mode='reflect')` with a periodic Hann window.

  Returns:
    (n_fft // 2 + 1, 1 + T // hop) complex, unnormalised rfft.
  """
  pad = n_fft // 2
  padded_T = (np.pad(audio_T, (pad, pad), mode="reflect") if audio_T.size > 1
              else np.pad(audio_T, (pad, pad), mode="constant"))
  n_frames = 1 + audio_T.size // hop
  frames_NxG = _frames(padded_T, n_fft, hop, n_frames) * hann_periodic(n_fft, np.float64)
  return np.fft.rfft(frames_NxG, axis=-1).T


def _floored_magnitude(audio_T: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
  spec = _centred_stft(audio_T, n_fft, hop)
  return np.sqrt(np.maximum(spec.real**2 + spec.imag**2, _POWER_FLOOR))


def multi_resolution_stft_distance(ref_T, est_T, fft_sizes=(2048, 1024, 512, 256),
                                   hop_fraction: float = 0.25) -> float:
  """Multi-resolution STFT distance (lower is better; 0 for identical signals).

  For each FFT size n (Hann window of n, hop n * hop_fraction, centred frames, unnormalised rfft,
  S = sqrt(max(|X|^2, 1e-7)) as in Parallel-WaveGAN):
    spectral convergence  ||S_ref - S_est||_F / ||S_ref||_F
    + log-magnitude L1    mean |log S_ref - log S_est|
  and the result is the mean over the resolutions.

  Args:
    ref_T: (T,) reference.
    est_T: (T,) estimate.
    fft_sizes: FFT sizes of the resolutions.
    hop_fraction: hop as a fraction of the FFT size.

  Returns:
    The distance, a float.
  """
  ref_T, est_T = _pair(ref_T, est_T)
  total = 0.0
  for n_fft in fft_sizes:
    hop = max(1, int(n_fft * hop_fraction))
    s_ref = _floored_magnitude(ref_T, n_fft, hop)
    s_est = _floored_magnitude(est_T, n_fft, hop)
    convergence = np.linalg.norm(s_ref - s_est) / np.linalg.norm(s_ref)
    log_l1 = np.mean(np.abs(np.log(s_ref) - np.log(s_est)))
    total += convergence + log_l1
  return float(total / len(fft_sizes))


def _hz_to_mel(hz):
  """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
  hz = np.asarray(hz, dtype=np.float64)
  linear = hz / (200.0 / 3.0)
  log_part = 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
  return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel):
  mel = np.asarray(mel, dtype=np.float64)
  linear = mel * (200.0 / 3.0)
  log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
  return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
  """Triangular mel filterbank, Slaney style (librosa's default: htk=False, norm='slaney').

  Band i is a triangle in Hz rising from edge f_i to its centre f_{i+1} and falling to f_{i+2},
  with the n_mels + 2 edges equally spaced on Slaney's mel scale between fmin and fmax.  Each
  triangle has peak 2 / (f_{i+2} - f_i), so its area in Hz is 1: wide high bands don't collect
  more energy just for being wide.

  Args:
    sample_rate: in Hz.
    n_fft: FFT size (the bank applies to n_fft // 2 + 1 rfft bins).
    n_mels: number of bands.
    fmin: lowest edge in Hz.
    fmax: highest edge in Hz; sample_rate / 2 when None.

  Returns:
    fb_YxF: (n_mels, n_fft // 2 + 1) float64 weights.
  """
  fmax = sample_rate / 2.0 if fmax is None else float(fmax)
  if not 0.0 <= fmin < fmax:
    raise ValueError(f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
  bin_hz_F = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
  edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
  lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
  rising = (bin_hz_F[None, :] - lo) / (mid - lo)
  falling = (hi - bin_hz_F[None, :]) / (hi - mid)
  tri_YxF = np.maximum(0.0, np.minimum(rising, falling))
  return tri_YxF * (2.0 / (hi - lo))


def log_mel_distance(ref_T, est_T, sample_rate: float, n_fft: int = 1024, hop: int = 256,
                     n_mels: int = 80) -> float:
  """Mean |log10(mel_ref + 1e-5) - log10(mel_est + 1e-5)| (lower is better).

  Mel spectrogram: Slaney filterbank applied to the magnitude (not power) of a centred Hann STFT,
  as in vocoder evaluation.

  Args:
    ref_T: (T,) reference.
    est_T: (T,) estimate.
    sample_rate: in Hz.
    n_fft: FFT size.
    hop: hop size.
    n_mels: number of mel bands.

  Returns:
    The distance, a float.
  """
  ref_T, est_T = _pair(ref_T, est_T)
  fb_YxF = mel_filterbank(sample_rate, n_fft, n_mels)
  mel_ref = fb_YxF @ np.abs(_centred_stft(ref_T, n_fft, hop))
  mel_est = fb_YxF @ np.abs(_centred_stft(est_T, n_fft, hop))
  return float(np.mean(np.abs(np.log10(mel_ref + _MEL_EPS) - np.log10(mel_est + _MEL_EPS))))


def si_sdr(ref_T, est_T) -> float:
  """Scale-invariant SDR in dB (higher is better).

  Both signals are made zero-mean; the target is the projection of the estimate onto the reference,
  alpha * ref with alpha = <est, ref> / ||ref||^2, and SI-SDR = 10 log10(||target||^2 / ||est -
  target||^2).  Identical signals give a very large finite value (about 313 dB).

  Args:
    ref_T: (T,) reference.
    est_T: (T,) estimate.

  Returns:
    SI-SDR in dB.
  """
  ref_T, est_T = _pair(ref_T, est_T)
  ref_T = ref_T - ref_T.mean()
  est_T = est_T - est_T.mean()
  tiny = np.finfo(np.float64).tiny
  alpha = np.dot(est_T, ref_T) / (np.dot(ref_T, ref_T) + tiny)
  target_T = alpha * ref_T
  noise_T = est_T - target_T
  target, noise = np.dot(target_T, target_T), np.dot(noise_T, noise_T)
  # Floor the distortion at float64 round-off of the target, so a perfect match gives ~313 dB, not
  # inf (which would poison means over files).
  noise = max(noise, target * np.finfo(np.float64).eps**2)
  return float(10.0 * np.log10((target + tiny) / (noise + tiny)))


def spectral_energy_curve(target_T, partial_recons_SxT, window: int = 2048,
                          hop: int = 256) -> np.ndarray:
  """Fraction of the target's spectral energy removed by each partial reconstruction.

  curve[k] = 1 - ||S(target) - S(recon_k)||_1 / ||S(target)||_1 with S = `stft_magnitude`: 1.0 for a
  perfect reconstruction, 0.0 for silence, negative when a reconstruction adds more than it
  explains.

  Args:
    target_T: (T,) target signal.
    partial_recons_SxT: (S, T) reconstructions, e.g. after 1, 2, ..., S events or atoms.
    window: STFT window.
    hop: STFT hop.

  Returns:
    (K,) float64.
  """
  target_T = _as_signal(target_T, "target_T")
  recons_SxT = np.asarray(partial_recons_SxT, dtype=np.float64)
  if recons_SxT.ndim != 2 or recons_SxT.shape[1] != target_T.size:
    raise ValueError(f"partial_recons_SxT must be (S, {target_T.size}), got {recons_SxT.shape}")
  s_target = stft_magnitude(target_T, window, hop)
  norm = max(float(np.sum(s_target)), 1e-300)
  return np.array([1.0 - np.sum(np.abs(s_target - stft_magnitude(r_T, window, hop))) / norm
                   for r_T in recons_SxT])


def estimate_lag(ref_T, est_T, max_lag: int) -> int:
  """The delay d in [-max_lag, max_lag] that maximises sum_n ref[n] * est[n + d].

  Args:
    ref_T: (T,) reference.
    est_T: (T',) estimate (any length), possibly delayed.
    max_lag: largest delay searched, in samples.

  Returns:
    d: est[n + d] lines up with ref[n] (positive when est is late).
  """
  ref_T, est_T = _as_signal(ref_T, "ref_T"), _as_signal(est_T, "est_T")
  corr = scipy.signal.correlate(est_T, ref_T, mode="full", method="fft")
  lags = scipy.signal.correlation_lags(est_T.size, ref_T.size, mode="full")
  keep = np.abs(lags) <= max_lag
  return int(lags[keep][np.argmax(corr[keep])])


def align(ref_T, est_T, max_lag: int) -> np.ndarray:
  """Shift an estimate onto its reference by the best integer lag; crop/zero-pad to ref's length.

  Args:
    ref_T: (T,) reference.
    est_T: (T',) estimate, possibly delayed by up to max_lag samples (either direction).
    max_lag: largest delay searched, in samples.

  Returns:
    (T,) float64: out[n] = est[n + d] where that index exists, else 0.
  """
  ref_T, est_T = _as_signal(ref_T, "ref_T"), _as_signal(est_T, "est_T")
  lag = estimate_lag(ref_T, est_T, max_lag)
  out_T = np.zeros(ref_T.size)
  lo, hi = max(0, -lag), min(ref_T.size, est_T.size - lag)
  if hi > lo:
    out_T[lo:hi] = est_T[lo + lag:hi + lag]
  return out_T


# ViSQOL (optional: the visqol-python package, a pure-Python port of Google's ViSQOL v3 that ships
# its model; nothing is downloaded at run time).
VISQOL_RATE = 48000
_VISQOL_API: list = []


def visqol_missing() -> str | None:
  """None if ViSQOL can run here, else one line saying what is missing and how to get it."""
  try:
    import visqol  # noqa: F401  (only whether it imports)
  except ImportError:
    return ("ViSQOL needs the visqol-python package: .venv/bin/pip install visqol-python "
            "(or pass --no-visqol)")
  return None


def visqol(ref_T, est_T, sample_rate: int) -> float:
  """ViSQOL v3 MOS-LQO in audio mode (1 to about 4.75, higher is better).

  Both signals are resampled to 48 kHz, the rate audio mode is defined at, and must have the same
  length (call `align` first for codec output; ViSQOL then aligns its patches itself).  About 1-2 s
  of CPU per second of audio.

  Raises:
    ImportError: visqol-python is not installed (see `visqol_missing`).
  """
  ref_T, est_T = _pair(ref_T, est_T)
  if not np.any(est_T):
    # ViSQOL rescales the estimate to the reference's level, which silence cannot be (it returns
    # NaN): give silence the scale's floor.
    return 1.0
  if not _VISQOL_API:
    import logging

    from visqol import VisqolApi
    # It warns (logging) about every non-48 kHz or short input; our inputs are resampled.
    logging.getLogger("visqol").setLevel(logging.ERROR)
    api = VisqolApi()
    api.create(mode="audio")
    _VISQOL_API.append(api)
  from sparse_jax import audio_io
  ref48 = audio_io.resample(ref_T, sample_rate, VISQOL_RATE).astype(np.float64)
  est48 = audio_io.resample(est_T, sample_rate, VISQOL_RATE).astype(np.float64)
  return float(_VISQOL_API[0].measure_from_arrays(ref48, est48, VISQOL_RATE).moslqo)
