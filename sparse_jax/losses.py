"""Training losses: greedy energy removal, and the adversarial terms on half-dropped mixes.

Energy removal (the paper's only loss).  The reference accumulates, over events sorted by
energy, ||r - C_j||_1 - ||r||_1 with r the running residual; that sum telescopes to
||T_w - sum_j C_j||_1 - ||T_w||_1, so it is computed in that closed form (sorting has no effect on
value or gradient).  T_w = |STFT(target * w)| with w = 1 on the first half and
linspace(1, 0) ** ramp_exponent on the second, which penalises event energy that spills past the
encoded half; C_j = |STFT(event_j)|.  Summed over batch, bins and frames, as the reference does.

Adversarial (the seed's system, a config switch).  Each event is dropped with probability
`event_drop_prob` before mixing, so any subset of events, and so every event on its own, must
sound real.  L1 / least-absolute-deviation GAN: D pushes real windows to 1 and fake mixes to 0; G
pushes its mixes to 1.
"""
import jax
import jax.numpy as jnp
import numpy as np

from sparse_jax import signal


def weighted_target_spec(audio_BxT: jax.Array, cfg, ramp_exponent: float,
                         start_ramp_samples: int = 0) -> jax.Array:
  """|STFT| of the target times its weight: the second-half ramp, and optionally a linear rise
  over the first `start_ramp_samples`.  Why the rise: a training window starts at a random
  offset, mid-note, and the only event that can explain sound begun before the window is one at
  frame 0; in streaming, the previous window's events explain it instead.  Weighting the start down
  stops rewarding events that pile up at frame 0 for it."""
  w_T = signal.second_half_ramp(cfg.n_samples, ramp_exponent)
  if start_ramp_samples:
    w_T = w_T.copy()
    w_T[:start_ramp_samples] *= np.linspace(0.0, 1.0, start_ramp_samples, endpoint=False)
  return signal.stft_magnitude(audio_BxT * w_T[None], cfg.window, cfg.hop)


def energy_removal_loss(target_spec_BxFxN: jax.Array, spec_sum_BxFxN: jax.Array) -> jax.Array:
  """sum_b ||T_w - sum_j C_j||_1 - ||T_w||_1: negative when energy is removed, 0 when silent."""
  return (jnp.abs(target_spec_BxFxN - spec_sum_BxFxN).sum()
          - jnp.abs(target_spec_BxFxN).sum())


def drop_events(events_BxExT: jax.Array, key: jax.Array, drop_prob: float) -> jax.Array:
  """Mix of the events in which each one is independently dropped with `drop_prob`."""
  keep_BxE = jax.random.bernoulli(key, 1.0 - drop_prob, events_BxExT.shape[:2])
  # Inside the sharded step the events are split over the batch axis and the fresh mask is not:
  # explicit-sharding JAX (>= 0.11) refuses to contract the two, so the mask follows the events.
  sharding = jax.typeof(events_BxExT).sharding
  mesh = getattr(sharding, "mesh", None)
  if mesh is not None and not mesh.empty and any(axis is not None for axis in sharding.spec):
    keep_BxE = jax.sharding.reshard(keep_BxE, jax.sharding.PartitionSpec(*sharding.spec[:2]))
  return jnp.einsum("be,bet->bt", keep_BxE.astype(events_BxExT.dtype), events_BxExT)


def generator_adversarial_loss(fake_logits: jax.Array) -> jax.Array:
  return jnp.mean(jnp.abs(1.0 - fake_logits))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  return jnp.mean(jnp.abs(fake_logits)) + jnp.mean(jnp.abs(1.0 - real_logits))
