"""The encoder: picks one event (vector, frame, gain) from a residual spectrogram.

An anti-causal, gated, dilated convolution stack reads the residual magnitude spectrogram; frame t
sees frames t .. t + sum(dilations) (the future, never the past: an event is judged by what
follows its onset).  Two 1x1 heads give a candidate event vector and a "switch" per frame; the
event is the frame with the largest ReLU(switch) in the FIRST HALF of the window, and that switch
value is its gain.  The time choice is a hard argmax (no gradient reaches the index); gradient
flows into the chosen vector and the chosen switch value.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from sparse_jax.geometry import Geometry
from sparse_jax.signal import unit_norm


def uniform_init(scale: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


def trunk_scale(cfg, fan_in: int) -> float:
  """The U(-s, s) bound of a hidden layer's weights: the paper's `init_scale`, or with
  `fan_in_init` the variance-preserving sqrt(3 / fan_in).

  Why it matters: at s = 0.02 a layer's outputs are ~1e-2 of its inputs, and Adam moves every bias
  by about the learning rate per step, in the same direction for every frame or event.  Within
  tens of steps the biases outweigh what the input contributes, every frame's features point the
  same way, and so do the event vectors (the collapse of docs/collapse.md).
  """
  return (3.0 / fan_in) ** 0.5 if cfg.fan_in_init else cfg.init_scale


def dense(rngs: nnx.Rngs, d_in: int, d_out: int, scale: float, use_bias: bool = True) -> nnx.Linear:
  """A dense layer with the paper's U(-scale, scale) weights and zero bias."""
  return nnx.Linear(d_in, d_out, use_bias=use_bias, kernel_init=uniform_init(scale),
                    bias_init=nnx.initializers.zeros, rngs=rngs)


class GatedDilatedBlock(nnx.Module):
  """tanh(conv(x) * a) * sigmoid(gate(x) * b) + x, with weight-normed kernel-2 convolutions.

  Both convolutions read x[t] and x[t + d]; they are fused into one (2C -> 2C) matmul over the
  concatenation [x[t], x[t + d]], which is the fastest form on CPUs and GPUs alike.
  """

  def __init__(self, channels: int, dilation: int, rngs: nnx.Rngs):
    self.dilation = dilation
    fan_in = 2 * channels
    bound = 1.0 / fan_in**0.5  # PyTorch's default conv init, which weight norm keeps
    v = jax.random.uniform(rngs.params(), (2 * channels, 2 * channels), jnp.float32, -bound, bound)
    self.v = nnx.Param(v)  # rows: [tap t, tap t+d] x in; columns: [conv out, gate out]
    self.g = nnx.Param(jnp.linalg.norm(v, axis=0))  # weight norm: per output channel
    self.b = nnx.Param(jnp.zeros((2 * channels,)))
    self.tanh_weight = nnx.Param(jnp.full((), 0.5, jnp.float32))
    self.sigmoid_weight = nnx.Param(jnp.full((), 0.5, jnp.float32))

  def __call__(self, x_BxNxC: jax.Array, out_len: int) -> jax.Array:
    """Computes the first `out_len` output frames (needs frames < out_len + dilation)."""
    d = self.dilation
    need = out_len + d
    if x_BxNxC.shape[1] < need:  # the anti-causal zero padding past the end of the window
      x_BxNxC = jnp.pad(x_BxNxC, ((0, 0), (0, need - x_BxNxC.shape[1]), (0, 0)))
    x = x_BxNxC[:, :out_len]
    taps = jnp.concatenate([x, x_BxNxC[:, d:d + out_len]], axis=-1)
    w = unit_norm(self.v[...], axis=0) * self.g[...][None]
    h = taps @ w + self.b[...][None, None]
    conv, gate = jnp.split(h, 2, axis=-1)
    y = jnp.tanh(conv * self.tanh_weight[...]) * jax.nn.sigmoid(gate * self.sigmoid_weight[...])
    return y + x


class Encoder(nnx.Module):
  """Residual spectrogram -> per-frame candidate vectors and switch values, first half only."""

  def __init__(self, cfg, rngs: nnx.Rngs):
    n_bins = Geometry.of(cfg).n_bins
    ch = cfg.encoder_channels
    self.n_frames = cfg.n_samples // cfg.hop
    self.dilations = tuple(cfg.dilations)
    self.proj = dense(rngs, n_bins, ch, trunk_scale(cfg, n_bins))
    self.blocks = nnx.List([GatedDilatedBlock(ch, d, rngs) for d in self.dilations])
    self.ff = dense(rngs, ch, ch, trunk_scale(cfg, ch))
    self.to_vectors = dense(rngs, ch, cfg.event_dim, trunk_scale(cfg, ch))
    # The switch keeps the small scale either way: events start quiet and the loss makes them loud.
    self.to_switch = dense(rngs, ch, 1, cfg.init_scale)
    # Whether the gain's gradient trains the stack (the paper) or only the switch head.
    self.gain_trains_stack = bool(cfg.gain_trains_stack)
    # 'none' (the paper), 'unit': each candidate vector scaled to unit RMS (the decoder reads only
    # its direction), 'centred': first centred over the window's first-half frames, then unit RMS.
    self.vector_norm = cfg.vector_norm
    # 'linear' (the paper): |STFT| as it is.  'log_centred': log |STFT| minus each bin's mean
    # over the window, so no input direction is shared by every frame (see `__call__`).
    self.input_scale = cfg.encoder_input

  def frames_needed(self) -> list[int]:
    """Frames each layer must output so that the first-half outputs are exact.

    Only first-half frames can be chosen, and frame t depends on frames t .. t + sum(dilations),
    so every layer is computed on a prefix of the window: about a third less work than the full
    window, with results identical to it (tested).
    """
    half = self.n_frames // 2
    needed = [half]
    for d in reversed(self.dilations):
      needed.append(max(needed[-1], half) + d)  # inputs of a block feed its output and the skips
    return needed[::-1]  # [proj output, block 1 output, ..., last block output]

  def __call__(self, spec_BxFxN: jax.Array):
    """Returns vectors (B, N/2, D) and switch logits (B, N/2) for the first-half frames."""
    h = self.features(spec_BxFxN)
    # The gain's gradient says "louder where it is loud" for every event alike; through a shared
    # stack it can align every frame's features with loudness (docs/collapse.md).
    h_switch = h if self.gain_trains_stack else jax.lax.stop_gradient(h)
    vectors = self.to_vectors(h)
    if self.vector_norm == "centred":
      vectors = vectors - vectors.mean(axis=1, keepdims=True)
    if self.vector_norm in ("unit", "centred"):
      # At the paper's U(+-0.02) scales a raw vector has norm ~1e-2, below what one Adam step
      # moves the decoder's biases: every event would decode alike (docs/collapse.md).
      vectors = unit_norm(vectors) * vectors.shape[-1] ** 0.5
    return vectors, self.to_switch(h_switch)[..., 0]

  def features(self, spec_BxFxN: jax.Array) -> jax.Array:
    """The stack's output (B, N/2, C) for the first-half frames, which both heads read."""
    half = self.n_frames // 2
    needed = self.frames_needed()
    if self.input_scale == "log_centred":
      # Every |STFT| frame is positive and dominated by the loud bins, so the frames share one
      # direction (the window's average spectrum, scaled by level); a sign-like optimiser step on
      # such inputs moves every frame's features the same way.  Centring log magnitudes per bin
      # removes that shared direction (and the level, which the gain carries).
      log_spec = jnp.log(jax.nn.relu(spec_BxFxN) + 1e-4)  # the residual may dip below 0
      spec_BxFxN = log_spec - log_spec.mean(axis=-1, keepdims=True)
    x = jnp.swapaxes(spec_BxFxN[:, :, :min(needed[0], self.n_frames)], 1, 2)
    x = self.proj(x)
    skips: jax.Array | float = 0.0
    for block, out_len in zip(self.blocks, needed[1:]):
      x = block(x, min(out_len, self.n_frames))
      skips = skips + x[:, :half]
    return self.ff(jnp.asarray(skips))


def choose_event(vectors_BxHxD: jax.Array, switch_BxH: jax.Array,
                 available_BxH: jax.Array | None = None):
  """Hard top-1 over ReLU(switch): the event's frame, its gain (the switch value) and vector.

  `available_BxH` (bool), where given, restricts the choice to those frames (see
  `exclusion_mask`, or the encoder's onset rule); the gain is still the chosen frame's
  ReLU(switch), and 0 where no frame is available (the event is silence).
  """
  attn_BxH = jax.nn.relu(switch_BxH)
  # -1 ranks an unavailable frame below every available one, silent (0) ones included.
  score_BxH = attn_BxH if available_BxH is None else jnp.where(available_BxH, attn_BxH, -1.0)
  frame_B = jnp.argmax(score_BxH, axis=-1)
  # A per-row index under vmap, not take_along_axis: with a batch of one per device the latter's
  # size-1 batch axis reads as a broadcast, which explicit sharding cannot place.
  pick = jax.vmap(lambda row, i: row[i])
  gain_B = pick(attn_BxH, frame_B)
  if available_BxH is not None:
    gain_B = jnp.where(available_BxH.any(axis=-1), gain_B, 0.0)
  vector_BxD = pick(vectors_BxHxD, frame_B)
  return vector_BxD, frame_B.astype(jnp.int32), gain_B


def exclusion_mask(frame_B: jax.Array, n_frames: int, radius: int) -> jax.Array:
  """(B, H) bool: the frames within `radius` - 1 of each chosen frame, which a window's later
  events may no longer take (radius 1: the frame itself; 0: none)."""
  return jnp.abs(jnp.arange(n_frames)[None, :] - frame_B[:, None]) < radius
