"""A small STFT-domain convolutional judge of the first half of a window.

|STFT| of the first half (F bins x N/2 frames) -> 1x1 conv to C channels -> `n_layers` x
[dropout, weight-normed conv (kernel 3, stride 2), leaky ReLU 0.2] -> a kernel-4, stride-4 judge.
With the default sizes 256 frames shrink to 4 and the judge emits one logit per window.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from sparse_jax import signal
from sparse_jax.encoder import dense
from sparse_jax.geometry import Geometry


class WeightNormConv(nnx.Module):
  """Conv1d (channels last) with weight normalisation, kernel k, stride s, padding (k - 1) // 2."""

  def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, rngs: nnx.Rngs):
    bound = 1.0 / (c_in * kernel) ** 0.5
    v = jax.random.uniform(rngs.params(), (kernel, c_in, c_out), jnp.float32, -bound, bound)
    self.v = nnx.Param(v)
    self.g = nnx.Param(jnp.sqrt(jnp.sum(v * v, axis=(0, 1))))
    self.b = nnx.Param(jnp.zeros((c_out,)))
    self.stride = stride

  def __call__(self, x_BxNxC: jax.Array) -> jax.Array:
    v = self.v[...]
    w = v * (self.g[...] * jax.lax.rsqrt(jnp.sum(v * v, axis=(0, 1)) + 1e-12))[None, None]
    pad = (w.shape[0] - 1) // 2
    y = jax.lax.conv_general_dilated(
        x_BxNxC, w, window_strides=(self.stride,), padding=[(pad, pad)],
        dimension_numbers=("NWC", "WIO", "NWC"))
    return y + self.b[...][None, None]


def layers_problem(model_cfg, disc_cfg) -> str | None:
  """Why `disc.n_layers` does not fit the window (None if it does): the stride-2 layers must
  leave the judge a multiple of 4 of the first half's frames."""
  frames = Geometry.of(model_cfg).half
  final = frames // 2**disc_cfg.n_layers
  if final < 4 or final % 4:
    return (f"disc.n_layers={disc_cfg.n_layers} leaves {final} frames of the {frames} first-half "
            f"frames; the judge needs a multiple of 4: lower or raise disc.n_layers")
  return None


class Discriminator(nnx.Module):

  def __init__(self, model_cfg, disc_cfg, rngs: nnx.Rngs):
    problem = layers_problem(model_cfg, disc_cfg)
    if problem:
      raise ValueError(problem)
    n_bins = Geometry.of(model_cfg).n_bins
    self.window, self.hop = model_cfg.window, model_cfg.hop
    self.half = model_cfg.n_samples // 2
    ch = disc_cfg.channels
    self.proj = dense(rngs, n_bins, ch, model_cfg.init_scale)
    self.layers = nnx.List([WeightNormConv(ch, ch, 3, 2, rngs) for _ in range(disc_cfg.n_layers)])
    self.dropout = nnx.Dropout(disc_cfg.dropout)
    self.judge = WeightNormConv(ch, 1, 4, 4, rngs)

  def __call__(self, audio_BxT: jax.Array, *, rngs: nnx.Rngs | None = None,
               deterministic: bool = True) -> jax.Array:
    """Logits (B, n) for the first half of each window (n = 1 with the default sizes)."""
    spec = signal.stft_magnitude(audio_BxT[:, :self.half], self.window, self.hop)
    x = self.proj(jnp.swapaxes(spec, 1, 2))
    for layer in self.layers:
      x = self.dropout(x, deterministic=deterministic, rngs=rngs)
      x = jax.nn.leaky_relu(layer(x), 0.2)
    return self.judge(x)[..., 0]
