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
  ramp_F = np.linspace(0.0, np.pi, n_bins, dtype=np.float32)
  phase_CxNxF = ((t_N1 + 1.0) * ramp_F[None])[None] + phase0_CxF[:, None]
  frames_CxNxG = jnp.fft.irfft(amp_CxNxF * jnp.exp(1j * phase_CxNxF), n=window, axis=-1)
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
