"""The synthesis blocks' DSP, as pure `jnp` functions of one event's controls (no Flax).

The blocks themselves (attack, resonance, room: what each reads and renders) are in `blocks.py`;
these are the signal-processing pieces they are made of.  Every function here renders ONE event;
the decoder vmaps them over the batch.

Lengths: `T` is the window (2^17 by default), `F` the STFT bins, `P` the points of an energy
envelope, `A` the length of the attack (envelope plus noise filter).
"""
import jax
import jax.numpy as jnp
import numpy as np

from sparse_jax import signal


def sparse_softmax(logits_xP: jax.Array) -> jax.Array:
  """Forward: a one-hot at the argmax with the height of the max softmax probability.

  Backward: the gradient of the softmax (straight-through), so every position keeps learning.
  """
  soft = jax.nn.softmax(logits_xP, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), soft.shape[-1]) * soft.max(-1, keepdims=True)
  return soft + jax.lax.stop_gradient(hard - soft)


def energy_impulse(envelope_IxP: jax.Array, attack_samples: int) -> jax.Array:
  """A positive train of up to I spikes, stretched to `attack_samples` (each spike a triangle).

  Args:
    envelope_IxP: I rows of P logits; each row contributes one spike at its argmax.
    attack_samples: length of the result, a multiple of P.

  Returns:
    (attack_samples,) non-negative energy envelope, with no noise in it yet.
  """
  spikes_P = sparse_softmax(envelope_IxP).sum(axis=0)
  return signal.upsample_linear(spikes_P, attack_samples)


def deformation_masks(deform_CxN: jax.Array, n_samples: int) -> jax.Array:
  """Time-varying weights over C channels that sum to one at every sample.

  The raw per-frame values are accumulated over time (so a mask changes smoothly and can drift from
  one channel to another), softmaxed across channels, then upsampled to audio rate.
  """
  masks_CxN = jax.nn.softmax(jnp.cumsum(deform_CxN, axis=-1), axis=0)
  return signal.upsample_linear(masks_CxN, n_samples)


def fft_resonances(params_Cx3F: jax.Array, n_samples: int, window: int) -> jax.Array:
  """C resonances, each a bank of F bin-centred, exponentially decaying partials.

  Each row holds three per-bin controls: a decay factor per frame in [0.5, 1), a phase offset,
  and a start magnitude.  Frames of `window` samples with a hop of window/2 are built in the
  frequency domain, inverse-FFT'd, Hann-windowed and overlap-added.  The per-frame phase advance
  is the fixed ramp pi*k/(F-1) of the paper's model (not phase-continuous: kept for fidelity).

  Args:
    params_Cx3F: (C, 3F) raw controls, F = window // 2 + 1.
    n_samples: output length T, a multiple of window // 2.
    window: frame length.

  Returns:
    (C, T) resonances, each L2-normalised.
  """
  n_bins = window // 2 + 1
  hop = window // 2
  n_res_frames = n_samples // hop
  decay_CxF = 0.5 + 0.5 * 0.9999 * jax.nn.sigmoid(params_Cx3F[:, :n_bins])
  phase0_CxF = jnp.pi * jnp.tanh(params_Cx3F[:, n_bins:2 * n_bins])
  start_CxF = jax.nn.sigmoid(params_Cx3F[:, 2 * n_bins:])
  t_N1 = np.arange(n_res_frames, dtype=np.float32)[:, None]
  amp_CxNxF = start_CxF[:, None] * jnp.exp(t_N1[None] * jnp.log(decay_CxF)[:, None])
  # Frame t's phase is (t + 1) * ramp_F + phase0: its rotor is the constant table
  # exp(i (t + 1) ramp_F), computed once in float64, times exp(i phase0) per resonance.  The
  # same values as exp(i * phase) per element, without a sine and a cosine for each of the
  # C x N x F of them (which made this function 60 % of an event's render on a CPU).
  ramp_F = np.linspace(0.0, np.pi, n_bins)
  rotor_NxF = np.exp(1j * (t_N1.astype(np.float64) + 1.0) * ramp_F[None]).astype(np.complex64)
  start_phase_CxF = jax.lax.complex(jnp.cos(phase0_CxF), jnp.sin(phase0_CxF))
  spectra_CxNxF = amp_CxNxF * (start_phase_CxF[:, None] * rotor_NxF[None])
  frames_CxNxG = jnp.fft.irfft(spectra_CxNxF, n=window, axis=-1)
  frames_CxNxG = frames_CxNxG * signal.hann_periodic(window)[None, None]
  # Overlap-add at hop = window/2: output block b = first half of frame b + second half of b-1.
  halves = frames_CxNxG.reshape(-1, n_res_frames, 2, hop)
  first, second = halves[:, :, 0], halves[:, :, 1]
  second = jnp.pad(second, ((0, 0), (1, 0), (0, 0)))[:, :n_res_frames]
  audio_CxT = (first + second).reshape(-1, n_res_frames * hop)[:, :n_samples]
  # The reference peak-normalises, then L2-normalises: the second undoes the first's scale, so
  # only the L2 step is kept (the peak step's gradient is 1/eps when a resonance underflows to 0).
  return signal.unit_norm(audio_CxT)


def dry_wet(dry, wet, mix_logits_2):
  """The 2-way gain of a block: softmax(mix) weights the dry input and the filtered signal."""
  mix = jax.nn.softmax(mix_logits_2)
  return mix[0] * dry + mix[1] * wet


def smooth_size(n: int) -> int:
  """The smallest 2^a * 3^b >= n: an FFT length that is fast and not much above n."""
  best = signal.fft_size(n)
  p3 = 1
  while p3 < best:
    size = p3 * signal.fft_size(-(-n // p3))
    best = min(best, size)
    p3 *= 3
  return best


def hard_choice(logits_xP: jax.Array) -> jax.Array:
  """Forward: a one-hot at the argmax (height 1).  Backward: the softmax's gradient
  (straight-through), so every option learns what choosing it would have done."""
  soft = jax.nn.softmax(logits_xP, axis=-1)
  hard = jax.nn.one_hot(jnp.argmax(logits_xP, axis=-1), logits_xP.shape[-1], dtype=soft.dtype)
  return soft + jax.lax.stop_gradient(hard - soft)


def midi_to_hz(midi):
  """Equal temperament, A4 (MIDI 69) = 440 Hz."""
  return 440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0)


def harmonic_combs(midi_P, n_samples: int, sample_rate: int, max_harmonics: int = 0,
                   top_hz_share: float = 0.45) -> np.ndarray:
  """(P, n_samples) float32: per pitch, its first `max_harmonics` harmonics (0: all) below
  `top_hz_share` * sample_rate, equal amplitudes, sine phase, unit L2 norm (the harmonic block's
  envelope gives them their timbre).

  A sum of K sines is the closed form sin(K x / 2) sin((K + 1) x / 2) / sin(x / 2), x the
  fundamental's phase: one pass per pitch, however many harmonics (hundreds for a low note).
  """
  t = np.arange(n_samples, dtype=np.float64)
  out = np.zeros((len(midi_P), n_samples), np.float64)
  for row, hz in enumerate(midi_to_hz(midi_P)):
    k = max(1, int(np.floor(top_hz_share * sample_rate / hz)))
    k = min(k, max_harmonics) if max_harmonics > 0 else k
    half = np.mod(2 * np.pi * hz * t / sample_rate, 2 * np.pi) / 2
    num, den = np.sin(k * half) * np.sin((k + 1) * half), np.sin(half)
    # At x = 0 (mod 2 pi) every sine is 0: so is the limit of the closed form.
    comb = np.divide(num, den, out=np.zeros_like(num), where=np.abs(den) > 1e-12)
    out[row] = comb / max(np.linalg.norm(comb), 1e-30)
  return out.astype(np.float32)


def band_interpolation(n_bands: int, n_bins: int, sample_rate: int,
                       lowest_hz: float = 40.0) -> np.ndarray:
  """(n_bands, n_bins) float32: weights that turn n_bands gains, at centres log-spaced from
  `lowest_hz` to Nyquist, into a gain per rfft bin (linear in log frequency between centres, flat
  beyond the ends; each bin's weights sum to one), a smooth spectral envelope."""
  centres = np.geomspace(lowest_hz, sample_rate / 2, n_bands)
  bins_hz = np.linspace(0.0, sample_rate / 2, n_bins)
  position = np.interp(np.log(np.maximum(bins_hz, lowest_hz)), np.log(centres),
                       np.arange(n_bands, dtype=np.float64))
  below = np.floor(position).astype(np.int64)
  above = np.minimum(below + 1, n_bands - 1)
  frac = position - below
  weights = np.zeros((n_bands, n_bins), np.float64)
  cols = np.arange(n_bins)
  np.add.at(weights, (below, cols), 1 - frac)
  np.add.at(weights, (above, cols), frac)
  return weights.astype(np.float32)
