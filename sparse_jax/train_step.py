"""The training state and the pure train step `(state, batch, graphs) -> (state, metrics)`.

The generator (encoder + decoder) and the discriminator are NNX modules used functionally: they are
split once into a static graph definition and array states, and merged again inside the jitted
step.  The fixed room bank is a constant passed beside the state, never trained or checkpointed.
One step updates both players from one forward pass of the removal loop.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sparse_jax import blocks, losses, representation
from sparse_jax.codec import onsets
from sparse_jax.discriminator import Discriminator
from sparse_jax.geometry import Geometry
from sparse_jax.model import SparseCodec, encode_audio


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  step: jax.Array
  g_params: nnx.State
  g_opt: optax.OptState
  d_params: nnx.State
  d_opt: optax.OptState
  rng: jax.Array


@dataclasses.dataclass(frozen=True)
class Graphs:
  """The static halves of the split modules, and the constants (room bank)."""
  g_graph: nnx.GraphDef
  d_graph: nnx.GraphDef
  g_consts: nnx.State = dataclasses.field(compare=False)


def learning_rate(cfg, peak: float):
  """A constant rate (the paper), or with optim.schedule='cosine' a cosine decay from `peak` to
  optim.final_lr_fraction * peak at train.num_steps (a short run ends on small, steady steps)."""
  if cfg.optim.schedule == "cosine":
    return optax.cosine_decay_schedule(peak, cfg.train.num_steps,
                                       alpha=cfg.optim.final_lr_fraction)
  return peak


def optimizers(cfg):
  adam = lambda lr: optax.adam(learning_rate(cfg, lr), b1=cfg.optim.b1, b2=cfg.optim.b2,
                               eps=cfg.optim.eps)
  return adam(cfg.optim.generator_lr), adam(cfg.optim.discriminator_lr)


def build_modules(cfg, seed):
  """Both players.  `seed` may be traced: under jit a constant seed would make XLA constant-fold
  every initialiser's random bits at compile time, which takes minutes at full size."""
  key = jax.random.key(seed)
  return (SparseCodec(cfg.model, nnx.Rngs(key)),
          Discriminator(cfg.model, cfg.disc, nnx.Rngs(jax.random.fold_in(key, 1))))


def abstract_generator(cfg) -> tuple[Graphs, nnx.State]:
  """The graphs and the generator's parameters as shapes only (for restoring it alone)."""
  g_model, disc = nnx.eval_shape(lambda: build_modules(cfg, 0))
  g_graph, abstract_params, abstract_consts = nnx.split(g_model, nnx.Param, ...)  # type: ignore[misc]
  d_graph, _ = nnx.split(disc, nnx.Param)
  return Graphs(g_graph, d_graph, block_constants(cfg, abstract_consts)), abstract_params


def make_graphs(cfg) -> Graphs:
  """The static graph definitions of both players (from shapes only) and the room constants."""
  return abstract_generator(cfg)[0]


def init_train_state(cfg, seed: int) -> TrainState:
  """Fresh parameters and optimiser states.  Pure: jit it, or eval_shape it for restoring."""
  g, d = build_modules(cfg, seed)
  g_params, d_params = nnx.state(g, nnx.Param), nnx.state(d, nnx.Param)
  tx_g, tx_d = optimizers(cfg)
  return TrainState(step=jnp.zeros((), jnp.int32), g_params=g_params, g_opt=tx_g.init(g_params),
                    d_params=d_params, d_opt=tx_d.init(d_params),
                    rng=jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 2)))


def create_train_state(cfg, seed: int | None = None) -> tuple[Graphs, TrainState]:
  """Initialises both players and their optimisers.

  Initialisation runs under one `jax.jit`, which compiles the initialisers once instead of
  dispatching each eagerly: seconds instead of tens of seconds at full size.
  """
  seed = cfg.seed if seed is None else seed
  init = jax.jit(functools.partial(init_train_state, cfg))
  return make_graphs(cfg), init(jnp.asarray(seed, jnp.int32))


def abstract_train_state(cfg) -> tuple[Graphs, TrainState]:
  """Graphs and the TrainState's shapes and dtypes, with nothing allocated (for restoring)."""
  return make_graphs(cfg), jax.eval_shape(
      functools.partial(init_train_state, cfg), jnp.asarray(cfg.seed, jnp.int32))


def block_constants(cfg, abstract_consts: nnx.State) -> nnx.State:
  """The generator's non-trained state, built once on the host: each leaf is the constant its
  block makes from the config, found by its path (..., block name, constant name, 'value')."""
  geo = Geometry.of(cfg.model)
  made = {block.name: block.constants(geo) for block in blocks.chain(cfg.model)}

  def value(path, leaf):
    block, name = (getattr(k, "key", None) for k in path[-3:-1])
    return jnp.asarray(made[block][name], leaf.dtype)

  return jax.tree_util.tree_map_with_path(value, abstract_consts)


def merge_generator(graphs: Graphs, g_params) -> SparseCodec:
  return nnx.merge(graphs.g_graph, g_params, graphs.g_consts)


def generator_forward(graphs: Graphs, g_params, d_params, batch_BxT, rng, cfg):
  """Generator loss and what the discriminator step needs.  Returns (loss, aux)."""
  model = merge_generator(graphs, g_params)
  target = losses.weighted_target_spec(
      batch_BxT, cfg.model, cfg.loss.ramp_exponent,
      cfg.model.hop * cfg.loss.start_ramp_frames)
  per_step = cfg.loss.energy_objective == "per_step"
  dec = encode_audio(model, batch_BxT, cfg.model, target_spec_BxFxN=target if per_step else None,
                     overshoot_weight=cfg.loss.overshoot_weight,
                     removal_knee=cfg.loss.removal_knee,
                     n_events=cfg.loss.trained_events or None,
                     allowed_BxH=onsets.training_rule(cfg, batch_BxT))
  # Both objectives have the same value; they differ in what each event's gradient sees.
  energy = (dec.step_removal_BxE.sum() if dec.step_removal_BxE is not None
            else losses.energy_removal_loss(target, dec.spec_sum_BxFxN))
  first_half_l1 = jnp.abs(target[:, :, :target.shape[-1] // 2]).sum((1, 2))
  metrics = {
      "energy_loss": energy,
      "removed_fraction": jnp.mean(1.0 - dec.residual_l1_BxE[:, -1] / (first_half_l1 + 1e-8)),
      "mean_gain": jnp.mean(dec.gains_BxE),
      "silent_events": jnp.mean((dec.gains_BxE <= 0).astype(jnp.float32)),
  }
  # Representation health of this batch's B * E events (a collapse shows here first).
  vectors_ExD = dec.vectors_BxExD.reshape(-1, dec.vectors_BxExD.shape[-1])
  metrics["effective_rank"] = representation.effective_rank(jax.lax.stop_gradient(vectors_ExD))
  metrics["mean_abs_cosine"] = representation.mean_abs_cosine(jax.lax.stop_gradient(vectors_ExD))
  loss = energy
  diversity_weight = cfg.loss.diversity_weight
  if diversity_weight:
    # Pushes the batch's event directions apart (isotropy): the penalty is 1 for one direction and
    # 1 / D at best, and reaches only the encoder, through the chosen vectors.  It is priced in
    # units of the target's L1, like the energy loss (-removed fraction * ||T_w||_1): a weight w
    # trades a collapse for at most w of the removed fraction, at any window size or level.
    spread = representation.mean_squared_cosine(vectors_ExD)
    metrics["mean_squared_cosine"] = spread
    loss = loss + diversity_weight * jnp.abs(target).sum() * spread
  fake_mix = None
  if cfg.loss.adversarial:
    k_drop, k_dropout = jax.random.split(rng)
    fake_mix = losses.drop_events(dec.events_BxExT, k_drop, cfg.loss.event_drop_prob)
    disc = nnx.merge(graphs.d_graph, d_params)
    logits = disc(fake_mix, rngs=nnx.Rngs(dropout=k_dropout), deterministic=False)
    adv = losses.generator_adversarial_loss(logits)
    metrics["g_adversarial"] = adv
    loss = loss + cfg.loss.adversarial_weight * adv
  return loss, (metrics, fake_mix)


def train_step(state: TrainState, batch_BxT: jax.Array, graphs: Graphs, cfg):
  """One update of the generator and (when adversarial) the discriminator.  Pure."""
  tx_g, tx_d = optimizers(cfg)
  rng = jax.random.wrap_key_data(state.rng)
  rng, k_gen, k_disc = jax.random.split(rng, 3)
  (g_loss, (metrics, fake_mix)), g_grads = jax.value_and_grad(generator_forward, argnums=1,
                                                              has_aux=True)(
      graphs, state.g_params, state.d_params, batch_BxT, k_gen, cfg)
  updates, g_opt = tx_g.update(g_grads, state.g_opt, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  metrics = dict(metrics, loss=g_loss, g_grad_norm=optax.tree_utils.tree_norm(g_grads))
  d_params, d_opt = state.d_params, state.d_opt
  if cfg.loss.adversarial:
    k_fake, k_real = jax.random.split(k_disc)

    def d_loss_fn(d_params):
      disc = nnx.merge(graphs.d_graph, d_params)
      fake = disc(jax.lax.stop_gradient(fake_mix), rngs=nnx.Rngs(dropout=k_fake),
                  deterministic=False)
      real = disc(batch_BxT, rngs=nnx.Rngs(dropout=k_real), deterministic=False)
      return losses.discriminator_loss(real, fake)

    d_loss, d_grads = jax.value_and_grad(d_loss_fn)(state.d_params)
    updates, d_opt = tx_d.update(d_grads, state.d_opt, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    metrics.update(d_loss=d_loss, d_grad_norm=optax.tree_utils.tree_norm(d_grads))
  new_state = TrainState(step=state.step + 1, g_params=g_params, g_opt=g_opt, d_params=d_params,
                         d_opt=d_opt, rng=jax.random.key_data(rng))
  return new_state, metrics
