"""Signal operations of the codec, as plain `jnp` functions (no Flax).

Conventions: time is the last axis; `T` is a length in samples, `N` a number of STFT frames, `F` a
number of frequency bins.  Every function works on any leading batch shape.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np


def hann_periodic(window: int, dtype=np.float32) -> np.ndarray:
  """The periodic ("DFT-even") Hann window, as torch.hann_window and scipy's hann(sym=False):
  the model's STFT, the metrics' (float64) and matching pursuit's atoms all use this one."""
  n = np.arange(window)
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / window)).astype(dtype)


def stft(audio_xT: jax.Array, window: int, hop: int) -> jax.Array:
  """Complex STFT of the spec: periodic Hann, rfft(norm='ortho'), right-padded, no centring.

  Frame t covers samples [hop*t, hop*t + window) of the signal right-padded with `window` zeros,
  and the first T // hop frames are kept, so 2^17 samples give 512 frames of 1025 bins.

  Args:
    audio_xT: real audio (..., T).
    window: window length (even).
    hop: hop length; `window` must be a multiple of it.

  Returns:
    Complex spectrum (..., F, N) with F = window // 2 + 1 and N = T // hop.
  """
  if window % hop:
    raise ValueError(f"window ({window}) must be a multiple of hop ({hop})")
  t = audio_xT.shape[-1]
  n = t // hop
  overlap = window // hop
  lead = audio_xT.shape[:-1]
  # Frames are `overlap` consecutive hop-sized blocks: build them from static slices rather than a
  # gather, so the backward pass is a sum of pads instead of a scatter-add (much faster on CPU).
  padded = jnp.pad(audio_xT[..., :n * hop], [(0, 0)] * len(lead) + [(0, window)])
  blocks = padded.reshape(*lead, n + overlap, hop)
  frames = jnp.concatenate([blocks[..., k:k + n, :] for k in range(overlap)], axis=-1)
  window_G = hann_periodic(window).reshape((1,) * (frames.ndim - 1) + (-1,))
  spec = jnp.fft.rfft(frames * window_G, axis=-1, norm="ortho")  # (..., N, F)
  return jnp.swapaxes(spec, -1, -2)


def stft_magnitude(audio_xT: jax.Array, window: int, hop: int) -> jax.Array:
  """|STFT| of `stft`: (..., T) -> (..., F, N), linear magnitude (no log), as the spec."""
  return jnp.abs(stft(audio_xT, window, hop))


def fft_size(n: int) -> int:
  """The smallest power of two >= n."""
  return 1 << max(0, math.ceil(math.log2(n)))


def fft_convolve(a_xT: jax.Array, b_xT: jax.Array, fft_len: int | None = None) -> jax.Array:
  """Linear (not circular) convolution through the FFT, cropped to the length of `a`.

  Both inputs are zero-padded to `fft_len` (default: the power of two >= len(a) + len(b) - 1),
  so nothing wraps around into the kept samples.
  """
  ta, tb = a_xT.shape[-1], b_xT.shape[-1]
  size = fft_len or fft_size(ta + tb - 1)
  fa, fb = jnp.fft.rfft(a_xT, n=size), jnp.fft.rfft(b_xT, n=size)
  rank = max(fa.ndim, fb.ndim)  # a one-signal input meets a bank: its leading axes written out
  fa = fa.reshape((1,) * (rank - fa.ndim) + fa.shape)
  fb = fb.reshape((1,) * (rank - fb.ndim) + fb.shape)
  return jnp.fft.irfft(fa * fb, n=size)[..., :ta]


def delay_ramp(size: int, delay_int_x: jax.Array, delay_frac_x: jax.Array | float) -> jax.Array:
  """The rfft of a one-hot at `delay_int + delay_frac` samples, for FFTs of length `size`.

  Multiplying a spectrum by it delays the signal.  The whole-sample part is reduced modulo
  `size` in uint32 arithmetic before it becomes a phase: k * d overflows 32 bits for long windows,
  but the product wraps modulo 2^32, which a power-of-two `size` divides, so the reduced phase is
  exact; float32 would lose hundreds of radians here.  The fractional part (at most a hop) is
  accurate in float32.

  Args:
    size: FFT length, a power of two.
    delay_int_x: whole-sample delays (...,), integers >= 0.
    delay_frac_x: fractional delays (...,), in samples, any sign.

  Returns:
    Complex (..., size // 2 + 1).
  """
  if size & (size - 1):
    raise ValueError(f"FFT size {size} must be a power of two")
  k = jnp.arange(size // 2 + 1, dtype=jnp.uint32)
  d = jnp.asarray(delay_int_x).astype(jnp.uint32)[..., None]
  whole = ((k * d) & jnp.uint32(size - 1)).astype(jnp.float32) / size
  frac = (k.astype(jnp.float32) / size) * jnp.asarray(delay_frac_x, jnp.float32)[..., None]
  return jnp.exp(-2j * jnp.pi * (whole + frac))


def schedule(event_xT: jax.Array, frame_x: jax.Array, gain_x: jax.Array, hop: int,
             fine_x: jax.Array | float = 0.0) -> jax.Array:
  """Places an event at STFT frame k: convolution with `gain * one_hot(hop * k)`, plus a fine shift.

  The event's first sample lands at sample hop*k + fine, scaled by the gain (the chosen switch
  value, which is where the encoder's amplitude gradient enters).  The signal is zero-padded to 2T
  so nothing wraps into the kept samples; what is pushed past T is dropped, and a negative fine
  shift at frame 0 moves the start into the padding, where it is lost.  Both shifts are one phase
  ramp, i.e. the convolution with the (fractionally delayed) one-hot, computed in closed form.

  Args:
    event_xT: audio (..., T).
    frame_x: integer frame index (...,).
    gain_x: gain (...,).
    hop: the STFT hop in samples.
    fine_x: fractional shift in samples (...,), differentiable.

  Returns:
    The scheduled audio (..., T).
  """
  t = event_xT.shape[-1]
  size = fft_size(2 * t)
  ramp = delay_ramp(size, hop * jnp.asarray(frame_x), fine_x)
  out = jnp.fft.irfft(jnp.fft.rfft(event_xT, n=size) * ramp, n=size)[..., :t]
  return jnp.asarray(gain_x)[..., None] * out


def delay_integer(audio_T: jax.Array, delay: jax.Array) -> jax.Array:
  """Delays one signal by a whole number of samples in [0, T], dropping what passes the end.

  Exact (a slice of the zero-padded signal), for signals whose content may fill the whole
  window, where a phase ramp at 2T would wrap their tail around to the start.
  """
  t = audio_T.shape[-1]
  padded = jnp.concatenate([jnp.zeros_like(audio_T), audio_T])
  return jax.lax.dynamic_slice(padded, (t - jnp.clip(delay, 0, t),), (t,))


def fine_shift(audio_xT: jax.Array, shift_x: jax.Array) -> jax.Array:
  """Delays by a fractional number of samples (a linear phase ramp on the 2T-padded signal)."""
  return schedule(audio_xT, jnp.zeros(jnp.shape(shift_x), jnp.int32), jnp.float32(1.0), 1,
                  shift_x)


def upsample_linear(x_xL: jax.Array, out_len: int) -> jax.Array:
  """Linear interpolation by an integer factor, half-pixel centres (align_corners=False).

  The sample grid of PyTorch's `interpolate(mode='linear')`: output i reads input position
  (i + 0.5) * L / out_len - 0.5, clamped at both ends.  Written as broadcasting over the
  factor instead of a gather, so its gradient is cheap.
  """
  length = x_xL.shape[-1]
  if out_len % length:
    raise ValueError(f"out_len {out_len} must be a multiple of the input length {length}")
  factor = out_len // length
  w_U = (np.arange(factor) + 0.5) / factor - 0.5  # in (-0.5, 0.5): position between neighbours
  left = jnp.concatenate([x_xL[..., :1], x_xL[..., :-1]], axis=-1)
  right = jnp.concatenate([x_xL[..., 1:], x_xL[..., -1:]], axis=-1)
  x = x_xL[..., None]
  lead = (1,) * x_xL.ndim  # w broadcasts over every axis but the factor's, written out
  up = (x + np.maximum(w_U, 0).reshape(lead + (-1,)) * (right[..., None] - x)
        + np.minimum(w_U, 0).reshape(lead + (-1,)) * (x - left[..., None]))
  return up.reshape(*x_xL.shape[:-1], out_len)


def second_half_ramp(n_samples: int, exponent: float) -> np.ndarray:
  """The loss weighting of the target: 1 on the first half, linspace(1, 0)**exponent after."""
  half = n_samples // 2
  return np.concatenate([np.ones(half), np.linspace(1.0, 0.0, n_samples - half) ** exponent]
                        ).astype(np.float32)


def unit_norm(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """x / ||x||_2 with a finite gradient at x = 0 (a plain norm's gradient there is NaN)."""
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=axis, keepdims=True) + eps)
