"""The codec: the 32-step removal loop that turns a spectrogram into events.

At each step the encoder reads the residual magnitude spectrogram and picks one event (vector,
frame, gain), the decoder renders and schedules it, and its magnitude spectrogram is subtracted
from the residual.  The residual is detached after every step (each event is trained only through
the loss, never through later encoder steps), and it is not clamped: it can go negative.

The loop is one `lax.scan`; its body is wrapped in `jax.checkpoint` (config `model.remat`) so
training memory does not grow with the number of steps.
"""
import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from sparse_jax import signal
from sparse_jax.decoder import Decoder
from sparse_jax.encoder import Encoder, choose_event, exclusion_mask
from sparse_jax.geometry import Geometry


class SparseCodec(nnx.Module):
  """Encoder + decoder.  Use it functionally: `nnx.split` once, `nnx.merge` inside jit."""

  def __init__(self, cfg, rngs: nnx.Rngs):
    self.encoder = Encoder(cfg, rngs)
    self.decoder = Decoder(cfg, rngs)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Decomposition:
  """What the removal loop returns for a batch of windows (E = number of steps)."""
  vectors_BxExD: jax.Array
  frames_BxE: jax.Array         # int32 STFT frame of each event (first half of the window)
  gains_BxE: jax.Array          # the chosen ReLU(switch) value
  fine_BxE: jax.Array           # sub-hop shift in samples
  events_BxExT: jax.Array       # each event's scheduled audio
  spec_sum_BxFxN: jax.Array     # sum of the events' magnitude spectrograms (carries gradient)
  residual_BxFxN: jax.Array     # the residual after the last step (detached)
  residual_l1_BxE: jax.Array    # first-half L1 of the residual after each step
  overshoot_l1_BxE: jax.Array   # ... of its negative part: what the events took beyond the input
  residuals_BxExFxN: jax.Array | None = None  # every step's residual, when asked for
  # Per step j, ||R_j-1 - C_j||_1 - ||R_j-1||_1 against the weighted target's residual R (detached
  # after each step), when a target is given: each event scored on what was left when it was chosen.
  step_removal_BxE: jax.Array | None = None


def decompose(model: SparseCodec, spec_BxFxN: jax.Array, cfg, *,
              keep_residuals: bool = False, n_events: int | None = None,
              target_spec_BxFxN: jax.Array | None = None,
              overshoot_weight: float = 1.0, removal_knee: float = 0.0,
              allowed_BxH: jax.Array | None = None) -> Decomposition:
  """Runs the removal loop on magnitude spectrograms (B, F, N) of windows of cfg.n_samples.

  With `target_spec_BxFxN` (the loss's weighted target), it also scores each step against the
  target's residual at that step (`step_removal_BxE`); `overshoot_weight` > 1 prices the bins
  where an event takes away more than is left (the residual goes negative) that many times
  (1: the L1 distance, the paper's measure); `removal_knee` > 0 compresses each bin's cost to
  knee * log(1 + cost / knee), the knee that fraction of each window's mean target magnitude.
  `allowed_BxH` (bool, H = the first half's frames), where given, is where events may start
  (the encoder's onset rule, `codec/onsets.py`); a step with no allowed frame left adds silence.
  """
  n_events = n_events or cfg.n_events
  half = Geometry.of(cfg).half
  # Frames near an earlier event's are closed to later events of the window (config
  # `model.exclusion_frames`; 0, the paper: any frame any number of times).  Why: the greedy loop
  # stacks many events on one loud frame, each removing a sliver of it, and where a window starts
  # inside a loud chord the stack sits at frame 0 (docs/collapse.md, "closing taken frames").
  exclusion = int(cfg.exclusion_frames)
  per_step = target_spec_BxFxN is not None
  if overshoot_weight == 1.0:
    cost = jnp.abs
  else:
    # No later event can fill a bin that an earlier one over-subtracted (events only add
    # magnitude), so an overshoot is priced above a shortfall, which a later event can remove.
    cost = lambda x: jnp.maximum(x, 0.0) + overshoot_weight * jnp.maximum(jnp.negative(x), 0.0)
  if target_spec_BxFxN is not None and removal_knee > 0:
    # Linear below the knee, logarithmic above: a bin 10x louder counts about 2.3x, not 10x.
    knee_Bx1x1 = jax.lax.stop_gradient(
        removal_knee * jnp.mean(jnp.abs(target_spec_BxFxN), axis=(1, 2), keepdims=True) + 1e-8)
    linear_cost = cost
    cost = lambda x: knee_Bx1x1 * jnp.log1p(linear_cost(x) / knee_Bx1x1)

  def step(carry, _):
    residual, spec_sum, target_residual, taken_BxH = carry
    vectors, switch = model.encoder(residual)
    available = allowed_BxH
    if exclusion:
      available = ~taken_BxH if available is None else available & ~taken_BxH
    vector, frame, gain = choose_event(vectors, switch, available)
    if exclusion:
      taken_BxH = taken_BxH | exclusion_mask(frame, taken_BxH.shape[1], exclusion)
    audio_BxT, fine = model.decoder(vector, frame, gain)
    event_spec = signal.stft_magnitude(audio_BxT, cfg.window, cfg.hop)
    residual = jax.lax.stop_gradient(residual - event_spec)
    out = dict(vector=vector, frame=frame, gain=gain, fine=fine, audio=audio_BxT,
               residual_l1=jnp.abs(residual[:, :, :half]).sum((1, 2)),
               overshoot_l1=jnp.maximum(-residual[:, :, :half], 0.0).sum((1, 2)))
    if per_step:
      out["step_removal"] = (cost(target_residual - event_spec).sum((1, 2))
                             - cost(target_residual).sum((1, 2)))
      target_residual = jax.lax.stop_gradient(target_residual - event_spec)
    if keep_residuals:
      out["residual"] = residual
    return (residual, spec_sum + event_spec, target_residual, taken_BxH), out

  # Remat keeps the matmul outputs (the encoder's convolutions, 90% of the FLOPs) and recomputes
  # the cheap elementwise and FFT work: the backward pass no longer reruns the encoder, for about
  # 1 GB more at the default size and batch 2.
  body = jax.checkpoint(step, policy=_save_real_matmuls) if cfg.remat else step
  init = (jax.lax.stop_gradient(spec_BxFxN), jnp.zeros_like(spec_BxFxN),
          jax.lax.stop_gradient(target_spec_BxFxN) if per_step else jnp.zeros(()),
          jnp.zeros_like(spec_BxFxN[:, 0, :half], dtype=bool))  # sharded as the batch
  (residual, spec_sum, _, _), outs = jax.lax.scan(body, init, None, length=n_events)
  swap = lambda x: jnp.swapaxes(x, 0, 1)
  return Decomposition(
      vectors_BxExD=swap(outs["vector"]), frames_BxE=swap(outs["frame"]),
      gains_BxE=swap(outs["gain"]), fine_BxE=swap(outs["fine"]),
      events_BxExT=swap(outs["audio"]), spec_sum_BxFxN=spec_sum, residual_BxFxN=residual,
      residual_l1_BxE=swap(outs["residual_l1"]), overshoot_l1_BxE=swap(outs["overshoot_l1"]),
      residuals_BxExFxN=swap(outs["residual"]) if keep_residuals else None,
      step_removal_BxE=swap(outs["step_removal"]) if per_step else None)


def _save_real_matmuls(prim, *avals, **params) -> bool:
  """Remat policy: save real-valued matmul outputs (complex ones trip a JAX remat bug)."""
  if not all(jnp.issubdtype(a.dtype, jnp.floating) for a in avals):
    return False
  return jax.checkpoint_policies.dots_with_no_batch_dims_saveable(prim, *avals, **params)


def encode_audio(model: SparseCodec, audio_BxT: jax.Array, cfg, **kwargs) -> Decomposition:
  """The removal loop on raw audio windows (B, cfg.n_samples)."""
  spec = signal.stft_magnitude(audio_BxT, cfg.window, cfg.hop)
  return decompose(model, spec, cfg, **kwargs)
