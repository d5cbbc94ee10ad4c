"""The physical decoder: event vector -> synthesis controls -> event audio.

A multi-head MLP maps the event vector to one output per synthesis control.  Most controls are
"lookups": a ReLU-weighted, unnormalised mix of the rows of a learned table (envelopes, noise
filters, resonances, deformations), which is a linear layer with a ReLU on its input.  The room is
a mix of a fixed bank of impulse responses (`rooms.py`).  Which heads, tables and controls exist,
and how each block renders, is the synthesis blocks' business (`blocks.py`); the DSP is in
`synth.py`.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparse_jax import blocks
from sparse_jax.encoder import trunk_scale, uniform_init
from sparse_jax.geometry import Geometry


class BlockConstant(nnx.Variable):
  """A block's constant (never trained, never checkpointed): rebuilt from the config."""

# The schedule's controls and the fine shift's head, beside the blocks' own names.
_SCHEDULE = ("frame", "gain", "fine")


def head_sizes(cfg) -> dict[str, tuple[int, ...]]:
  """The MLP heads and their output shapes, per event: the chain's blocks' heads in order, then
  the fine shift's.

  The paper's model also computes `amplitudes` (1) and `res_filter` (2, 64) but never uses them
  (2.2M dead parameters); they are left out here.
  """
  chain = blocks.chain(cfg)
  blocks.check_names("head", [(b.name, b.heads()) for b in chain] + [("schedule", _SCHEDULE)])
  sizes = {}
  for block in chain:
    sizes.update(block.heads())
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
    x = jnp.einsum("bd,hdm->bhm", vector_BxD, self.w_in[...]) + self.b_in[...][None]
    for i in range(self.w1.shape[0]):
      h = jax.nn.leaky_relu(jnp.einsum("bhm,hmk->bhk", x, self.w1[i]) + self.b1[i][None], 0.2)
      h = jnp.einsum("bhm,hmk->bhk", h, self.w2[i]) + self.b2[i][None]
      x = jax.nn.leaky_relu(x + h, 0.2)
      mean = x.mean(-1, keepdims=True)
      var = x.var(-1, keepdims=True)
      x = (x - mean) * jax.lax.rsqrt(var + 1e-5) * self.ln_scale[i][None] + self.ln_bias[i][None]
    out = {}
    for h_idx, name in enumerate(self.names):
      y = x[:, h_idx] @ self.out_w[name][...]
      if name in self.out_b:
        y = y + self.out_b[name][...][None]
      out[name] = y.reshape(y.shape[0], *self.shapes[name])
    return out


class Decoder(nnx.Module):
  """Event vectors (B, D), frames (B,), gains (B,) -> scheduled event audio (B, T).

  The synthesis is the chain of blocks of `model.blocks` (`blocks.py`): the decoder creates their
  heads (one stacked MLP) and tables (as its own parameters, named by the blocks), turns head
  outputs into each block's controls, and renders the chain and the schedule per event.
  """

  def __init__(self, cfg, rngs: nnx.Rngs):
    self.chain = nnx.static(blocks.chain(cfg))
    self.geometry = nnx.static(Geometry.of(cfg))
    self.fine_positioning = nnx.static(bool(cfg.fine_positioning))
    self.heads = MultiHeadMLP(cfg, head_sizes(cfg), rngs)
    init = blocks.TableInit(rngs)
    tables = [(block.name, block.tables(self.geometry, init)) for block in self.chain]
    blocks.check_names("table", tables + [("decoder", vars(self))])
    for _, block_tables in tables:
      for name, value in block_tables.items():
        setattr(self, name, nnx.Param(value))
    self.table_names = nnx.static(tuple(name for _, t in tables for name in t))
    # Each block's constants under its own name (a constant is local to its block's render).
    self.constants = nnx.Dict({
        block.name: nnx.Dict({name: BlockConstant(jnp.asarray(value))
                              for name, value in block.constants(self.geometry).items()})
        for block in self.chain})

  def controls(self, vector_BxD, frame_B, gain_B, fine_B=None) -> dict[str, jax.Array]:
    """The synthesis controls of every block of the chain, batched over B, and the schedule's
    (frame, gain, fine).  `fine_B` overrides the fine shift of the `fine` head (a decoded file
    stores its own)."""
    heads = self.heads(vector_BxD)
    tables = {name: getattr(self, name)[...] for name in self.table_names}
    by_block = [(block.name, block.controls(heads, tables, self.geometry))
                for block in self.chain]
    blocks.check_names("control", by_block + [("schedule", _SCHEDULE)])
    out = {}
    for _, controls in by_block:
      out.update(controls)
    out.update(frame=frame_B, gain=gain_B)
    b = vector_BxD.shape[0]
    if fine_B is not None:
      out["fine"] = jnp.asarray(fine_B, jnp.float32)
    elif self.fine_positioning:
      out["fine"] = jnp.tanh(heads["fine"][:, 0]) * self.geometry.hop  # within +-1 hop
    else:
      out["fine"] = jnp.zeros((b,), jnp.float32)
    return out

  def __call__(self, vector_BxD, frame_B, gain_B, fine_B=None) -> tuple[jax.Array, jax.Array]:
    """Returns the scheduled audio (B, T) and the fine shift in samples (B,)."""
    controls = self.controls(vector_BxD, frame_B, gain_B, fine_B)
    consts = {name: {k: v[...] for k, v in block.items()}
              for name, block in self.constants.items()}
    render = lambda ctl: blocks.render_event(ctl, consts, self.geometry, self.chain)
    return jax.vmap(render)(controls), controls["fine"]
