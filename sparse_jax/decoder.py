"""The physical decoder: event vector -> synthesis controls -> event audio.

A multi-head MLP maps the 32-d event vector to one output per synthesis control.  Most controls
are "lookups": a ReLU-weighted, unnormalised mix of the rows of a learned table (envelopes, noise
filters, resonances, deformations), which is a linear layer with a ReLU on its input.  The room is
a mix of a fixed bank of impulse responses (`rooms.py`).  The DSP lives in `synth.py`.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparse_jax import rooms, signal, synth
from sparse_jax.encoder import trunk_scale, uniform_init


class RoomBank(nnx.Variable):
  """A constant (never trained, never checkpointed): rebuilt from the config's seed."""


def head_sizes(cfg) -> dict[str, tuple[int, ...]]:
  """The MLP heads and their output shapes, per event.

  The paper's model also computes `amplitudes` (1) and `res_filter` (2, 64) but never uses them
  (2.2M dead parameters); they are left out here.
  """
  sizes = {
      "envelopes": (cfg.n_envelopes,),
      "noise_resonance": (cfg.noise_expressivity, cfg.n_noise_filters),
      "noise_deformations": (cfg.n_noise_deformations,),
      "noise_mixes": (2,),
      "resonances": (cfg.instr_expressivity, cfg.n_resonances),
      "deformations": (cfg.n_deformations,),
      "mixes": (2,),
      "room_choice": (cfg.n_rooms,),
      "room_mix": (2,),
  }
  if cfg.fine_positioning:
    sizes["fine"] = (1,)
  return sizes


class MultiHeadMLP(nnx.Module):
  """One residual MLP per head; the trunks are stacked so all heads run as one batched matmul.

  Each head: Linear(D -> M), `blocks` x [h = Linear(leaky_relu(Linear(x))); x = LayerNorm(
  leaky_relu(x + h))], then Linear(M -> prod(shape)) (bias only when the output has > 1 value).
  """

  def __init__(self, cfg, sizes: dict, rngs: nnx.Rngs):
    n, d, m, s = len(sizes), cfg.event_dim, cfg.mlp_hidden, cfg.init_scale
    u = uniform_init(s)
    self.names = tuple(sizes)
    self.shapes = nnx.static({k: tuple(v) for k, v in sizes.items()})
    # The first layer's scale sets how loudly the event vector speaks against the heads' biases.
    # The trunk may start variance-preserving (`fan_in_init`); the output layers keep the paper's
    # scale, which the tables' post-processing (sigmoids, softmaxes) was designed around.
    self.w_in = nnx.Param(uniform_init(trunk_scale(cfg, d))(rngs.params(), (n, d, m)))
    self.b_in = nnx.Param(jnp.zeros((n, m)))
    u_trunk = uniform_init(trunk_scale(cfg, m))
    self.w1 = nnx.Param(u_trunk(rngs.params(), (cfg.mlp_blocks, n, m, m)))
    self.b1 = nnx.Param(jnp.zeros((cfg.mlp_blocks, n, m)))
    self.w2 = nnx.Param(u_trunk(rngs.params(), (cfg.mlp_blocks, n, m, m)))
    self.b2 = nnx.Param(jnp.zeros((cfg.mlp_blocks, n, m)))
    # LayerNorm scale starts at 1 (the paper's blanket U(+-0.02) init also hit these, which
    # starts every head near silence; a likely cause of the collapse to silence it reports).
    self.ln_scale = nnx.Param(jnp.ones((cfg.mlp_blocks, n, m)))
    self.ln_bias = nnx.Param(jnp.zeros((cfg.mlp_blocks, n, m)))
    self.out_w = nnx.Dict({k: nnx.Param(u(rngs.params(), (m, int(np.prod(v)))))
                           for k, v in sizes.items()})
    self.out_b = nnx.Dict({k: nnx.Param(jnp.zeros((int(np.prod(v)),)))
                           for k, v in sizes.items() if np.prod(v) > 1})

  def __call__(self, vector_BxD: jax.Array) -> dict[str, jax.Array]:
    x = jnp.einsum("bd,hdm->bhm", vector_BxD, self.w_in[...]) + self.b_in[...]
    for i in range(self.w1.shape[0]):
      h = jax.nn.leaky_relu(jnp.einsum("bhm,hmk->bhk", x, self.w1[i]) + self.b1[i], 0.2)
      h = jnp.einsum("bhm,hmk->bhk", h, self.w2[i]) + self.b2[i]
      x = jax.nn.leaky_relu(x + h, 0.2)
      mean = x.mean(-1, keepdims=True)
      var = x.var(-1, keepdims=True)
      x = (x - mean) * jax.lax.rsqrt(var + 1e-5) * self.ln_scale[i] + self.ln_bias[i]
    out = {}
    for h_idx, name in enumerate(self.names):
      y = x[:, h_idx] @ self.out_w[name][...]
      if name in self.out_b:
        y = y + self.out_b[name][...]
      out[name] = y.reshape(y.shape[0], *self.shapes[name])
    return out


class Decoder(nnx.Module):
  """Event vectors (B, D), frames (B,), gains (B,) -> scheduled event audio (B, T)."""

  def __init__(self, cfg, rngs: nnx.Rngs):
    self.cfg = nnx.static(dict(
        n_samples=cfg.n_samples, window=cfg.window, hop=cfg.hop,
        attack_samples=cfg.attack_samples, envelope_spikes=cfg.envelope_spikes,
        envelope_points=cfg.envelope_points, fine_positioning=cfg.fine_positioning))
    n_bins = cfg.window // 2 + 1
    n_frames = cfg.n_samples // cfg.hop
    self.heads = MultiHeadMLP(cfg, head_sizes(cfg), rngs)
    u = uniform_init
    self.envelopes = nnx.Param(u(0.02)(
        rngs.params(), (cfg.n_envelopes, cfg.envelope_spikes * cfg.envelope_points)))
    self.noise_filters = nnx.Param(u(1.0)(
        rngs.params(), (cfg.n_noise_filters, cfg.noise_filter_samples)))
    self.noise_deformations = nnx.Param(u(0.02)(
        rngs.params(), (cfg.n_noise_deformations, cfg.noise_expressivity * n_frames)))
    # The resonance table is sparse at init: U(-6, 6) on about 1% of its entries.
    k1, k2 = jax.random.split(rngs.params())
    res = u(6.0)(k1, (cfg.n_resonances, 3 * n_bins))
    self.resonances = nnx.Param(res * jax.random.bernoulli(k2, 0.01, res.shape))
    self.deformations = nnx.Param(u(0.02)(
        rngs.params(), (cfg.n_deformations, cfg.instr_expressivity * n_frames)))
    self.room_spectra = RoomBank(jnp.asarray(rooms.room_bank_spectra(
        cfg.n_rooms, cfg.n_samples, cfg.sample_rate, cfg.room_seed)))

  def controls(self, vector_BxD, frame_B, gain_B, fine_B=None) -> dict[str, jax.Array]:
    """The synthesis controls of `synth.render_event`, batched over B.

    `fine_B` overrides the fine shift of the `fine` head (a decoded file stores its own).
    """
    c = self.cfg
    heads = self.heads(vector_BxD)
    relu = jax.nn.relu
    b = vector_BxD.shape[0]
    n_frames = c["n_samples"] // c["hop"]
    env = relu(heads["envelopes"]) @ self.envelopes[...]
    noise_rows = signal.unit_norm(self.noise_filters[...])
    out = {
        "envelope_SxP": env.reshape(b, c["envelope_spikes"], c["envelope_points"]),
        "noise_filters_CxL": relu(heads["noise_resonance"]) @ noise_rows,
        "noise_deform_CxN": (relu(heads["noise_deformations"]) @ self.noise_deformations[...]
                             ).reshape(b, -1, n_frames),
        "noise_mix_2": heads["noise_mixes"],
        "resonance_params_Cx3F": relu(heads["resonances"]) @ self.resonances[...],
        "deform_CxN": (relu(heads["deformations"]) @ self.deformations[...]
                       ).reshape(b, -1, n_frames),
        "mix_2": heads["mixes"],
        "room_weights_R": relu(heads["room_choice"]),
        "room_mix_2": heads["room_mix"],
        "frame": frame_B,
        "gain": gain_B,
    }
    if fine_B is not None:
      out["fine"] = jnp.asarray(fine_B, jnp.float32)
    elif c["fine_positioning"]:
      out["fine"] = jnp.tanh(heads["fine"][:, 0]) * c["hop"]  # within +-1 hop
    else:
      out["fine"] = jnp.zeros((b,), jnp.float32)
    return out

  def __call__(self, vector_BxD, frame_B, gain_B, fine_B=None) -> tuple[jax.Array, jax.Array]:
    """Returns the scheduled audio (B, T) and the fine shift in samples (B,)."""
    c = self.cfg
    controls = self.controls(vector_BxD, frame_B, gain_B, fine_B)
    rooms_spec = self.room_spectra[...]
    render = lambda ctl: synth.render_event(
        ctl, rooms_spec, n_samples=c["n_samples"], window=c["window"], hop=c["hop"],
        attack_samples=c["attack_samples"])
    return jax.vmap(render)(controls), controls["fine"]
