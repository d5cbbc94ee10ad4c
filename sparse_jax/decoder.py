"""The physical decoder: event vector -> synthesis controls -> event audio.

A multi-head MLP maps the event vector to one output per synthesis control.  Most controls are
"lookups": a ReLU-weighted, unnormalised mix of the rows of a learned table (envelopes, noise
filters, resonances, deformations), which is a linear layer with a ReLU on its input.  The room is
a mix of a fixed bank of impulse responses (`rooms.py`).  Which heads, tables and controls exist,
and how each block renders, is the synthesis blocks' business (`blocks.py`), each in its block's
namespace; the DSP is in `synth.py`.
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

def head_sizes(cfg) -> dict[str, dict[str, tuple[int, ...]]]:
  """The MLP heads and their output shapes, per event, by owner: {block name: its heads} in the
  chain's order, then the fine shift's head under 'schedule'.

  The paper's model also computes `amplitudes` (1) and `res_filter` (2, 64) but never uses them
  (2.2M dead parameters); they are left out here.
  """
  sizes = {block.name: dict(block.heads()) for block in blocks.chain(cfg)}
  if cfg.fine_positioning:
    sizes["schedule"] = {"fine": (1,)}
  return {owner: heads for owner, heads in sizes.items() if heads}


class MultiHeadMLP(nnx.Module):
  """One residual MLP per head; the trunks are stacked so all heads run as one batched matmul.

  Each head: Linear(D -> M), `blocks` x [h = Linear(leaky_relu(Linear(x))); x = LayerNorm(
  leaky_relu(x + h))], then Linear(M -> prod(shape)) (bias only when the output has > 1 value).
  Heads are grouped by owner ({owner: {head: shape}}), and so are the outputs.
  """

  def __init__(self, cfg, sizes: dict, rngs: nnx.Rngs):
    flat = [(owner, head, tuple(shape)) for owner, heads in sizes.items()
            for head, shape in heads.items()]
    n, d, m, s = len(flat), cfg.event_dim, cfg.mlp_hidden, cfg.init_scale
    u = uniform_init(s)
    self.names = nnx.static(tuple((owner, head) for owner, head, _ in flat))
    self.shapes = nnx.static({(owner, head): shape for owner, head, shape in flat})
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
    # Drawn in the trunks' order, owner by owner (which fixes every head's initial values).
    self.out_w = nnx.Dict({
        owner: nnx.Dict({head: nnx.Param(u(rngs.params(), (m, int(np.prod(shape)))))
                         for head, shape in heads.items()})
        for owner, heads in sizes.items()})
    self.out_b = nnx.Dict({
        owner: nnx.Dict({head: nnx.Param(jnp.zeros((int(np.prod(shape)),)))
                         for head, shape in heads.items() if np.prod(shape) > 1})
        for owner, heads in sizes.items() if any(np.prod(v) > 1 for v in heads.values())})

  def __call__(self, vector_BxD: jax.Array) -> dict[str, dict[str, jax.Array]]:
    x = jnp.einsum("bd,hdm->bhm", vector_BxD, self.w_in[...]) + self.b_in[...][None]
    for i in range(self.w1.shape[0]):
      h = jax.nn.leaky_relu(jnp.einsum("bhm,hmk->bhk", x, self.w1[i]) + self.b1[i][None], 0.2)
      h = jnp.einsum("bhm,hmk->bhk", h, self.w2[i]) + self.b2[i][None]
      x = jax.nn.leaky_relu(x + h, 0.2)
      mean = x.mean(-1, keepdims=True)
      var = x.var(-1, keepdims=True)
      x = (x - mean) * jax.lax.rsqrt(var + 1e-5) * self.ln_scale[i][None] + self.ln_bias[i][None]
    out: dict = {}
    for h_idx, (owner, head) in enumerate(self.names):
      y = x[:, h_idx] @ self.out_w[owner][head][...]
      if owner in self.out_b and head in self.out_b[owner]:
        y = y + self.out_b[owner][head][...][None]
      out.setdefault(owner, {})[head] = y.reshape(y.shape[0], *self.shapes[(owner, head)])
    return out


class Decoder(nnx.Module):
  """Event vectors (B, D), frames (B,), gains (B,) -> scheduled event audio (B, T).

  The synthesis is the chain of blocks of `model.blocks` (`blocks.py`): the decoder creates their
  heads (one stacked MLP), tables and constants, each under its block's name, turns each block's
  head outputs into its controls, and renders the chain and the schedule per event.
  """

  def __init__(self, cfg, rngs: nnx.Rngs):
    self.chain = nnx.static(blocks.chain(cfg))
    self.geometry = nnx.static(Geometry.of(cfg))
    self.fine_positioning = nnx.static(bool(cfg.fine_positioning))
    self.heads = MultiHeadMLP(cfg, head_sizes(cfg), rngs)
    init = blocks.TableInit(rngs)
    tables = [(block.name, block.tables(self.geometry, init)) for block in self.chain]
    self.tables = nnx.Dict({name: nnx.Dict({k: nnx.Param(v) for k, v in block_tables.items()})
                            for name, block_tables in tables if block_tables})
    # Each block's constants under its own name (a constant is local to its block's render).
    self.constants = nnx.Dict({
        block.name: nnx.Dict({name: BlockConstant(jnp.asarray(value))
                              for name, value in block.constants(self.geometry).items()})
        for block in self.chain})

  def controls(self, vector_BxD, frame_B, gain_B, fine_B=None) -> dict:
    """The synthesis controls, batched over B: {block name: that block's controls} for the
    chain, and the schedule's frame, gain and fine.  `fine_B` overrides the fine shift of the
    `fine` head (a decoded file stores its own)."""
    heads = self.heads(vector_BxD)
    out: dict = {block.name: self._block_controls(block, heads) for block in self.chain}
    out.update(frame=frame_B, gain=gain_B)
    b = vector_BxD.shape[0]
    if fine_B is not None:
      out["fine"] = jnp.asarray(fine_B, jnp.float32)
    elif self.fine_positioning:
      out["fine"] = jnp.tanh(heads["schedule"]["fine"][:, 0]) * self.geometry.hop  # +-1 hop
    else:
      out["fine"] = jnp.zeros((b,), jnp.float32)
    return out

  def _block_controls(self, block, heads) -> dict:
    """One block's controls from the MLP's outputs (all blocks': {owner: {head: array}})."""
    tables = {k: v[...] for k, v in self.tables.get(block.name, {}).items()}
    return block.controls(heads.get(block.name, {}), tables, self.geometry)

  def pitches(self, vector_BxD):
    """(MIDI note (B,), sounded (B,)) of each event, from the block of the chain with a pitch
    control (`blocks.pitch_block`; only its controls are made); None when no block has one."""
    block = blocks.pitch_block(self.chain)
    if block is None:
      return None
    return block.read_pitch(self._block_controls(block, self.heads(vector_BxD)))

  def __call__(self, vector_BxD, frame_B, gain_B, fine_B=None) -> tuple[jax.Array, jax.Array]:
    """Returns the scheduled audio (B, T) and the fine shift in samples (B,)."""
    controls = self.controls(vector_BxD, frame_B, gain_B, fine_B)
    consts = {name: {k: v[...] for k, v in block.items()}
              for name, block in self.constants.items()}
    render = lambda ctl: blocks.render_event(ctl, consts, self.geometry, self.chain)
    return jax.vmap(render)(controls), controls["fine"]
