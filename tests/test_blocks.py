"""A synthesis block is one class: its heads, tables, constants, controls and signal.

The block below exists only in this file.  Registered, named in `model.chain` and given its
section `model.blocks.noise_burst`, it trains with no change to the decoder, the train step, the
checkpoint or the generator file; its constant (a seeded noise bank, made from its own settings)
reaches its own render, and the room's constant reaches the room's.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import musicnet
from sparse_jax import blocks, config, rooms, synth, train_step
from sparse_jax.errors import UserError

NOISE_SEED = 7


@dataclasses.dataclass(frozen=True)
class NoiseBurst(blocks.Block):
  """A seeded filtered-noise burst added to the attack: a choice among a fixed noise bank,
  shaped by a learned filter table (magenta/ddsp's FilteredNoise, cut down)."""
  bank_size: int                   # its settings: the section model.blocks.noise_burst
  burst_samples: int
  seed: int
  name = "noise_burst"
  lookups = {"burst_filter": "burst_filters"}

  def heads(self):
    return {"burst_filter": (4,), "burst_choice": (self.bank_size,), "burst_mix": (2,)}

  def tables(self, geo, init):
    return {"burst_filters": init.uniform(0.1, (4, 16))}

  def constants(self, geo):
    return {"noise_NxA": np.random.default_rng(self.seed).standard_normal(
        (self.bank_size, self.burst_samples)).astype(np.float32)}

  def controls(self, heads, tables, geo):
    return {"burst_filter_L": jax.nn.relu(heads["burst_filter"]) @ tables["burst_filters"],
            "burst_choice_N": jax.nn.softmax(heads["burst_choice"]),
            "burst_mix_2": heads["burst_mix"]}

  def render(self, x, controls, consts, geo):
    noise_A = controls["burst_choice_N"] @ consts["noise_NxA"]
    burst_A = jnp.convolve(noise_A, controls["burst_filter_L"], mode="same")
    burst = jnp.pad(burst_A, (0, max(x.shape[0] - burst_A.shape[0], 0)))[:x.shape[0]]
    return synth.dry_wet(x, burst, controls["burst_mix_2"])


def with_block(block_class, cfg, **settings):
  """`cfg` with `block_class` registered, in the chain after the attack, and its section."""
  if block_class.name not in blocks.BLOCKS:
    blocks.register(block_class)
  cfg.model.chain = ("attack", block_class.name) + tuple(cfg.model.chain[1:])
  cfg.model.blocks[block_class.name] = ml_collections.ConfigDict(settings)
  return cfg


@pytest.fixture(scope="module")
def burst_config():
  return with_block(NoiseBurst, musicnet.get_config("tiny"), bank_size=3, burst_samples=1024,
                    seed=NOISE_SEED)


def test_a_block_defined_here_trains_one_step(burst_config):
  cfg = burst_config
  config.validate(cfg)
  graphs, state = train_step.create_train_state(cfg)
  decoder = state.g_params["decoder"]
  assert set(decoder["heads"]["out_w"]) >= {"burst_filter", "burst_choice", "burst_mix"}
  assert decoder["burst_filters"][...].shape == (4, 16)
  # Each constant is its block's own: the noise bank here, the room bank there.
  consts = graphs.g_consts["decoder"]["constants"]
  m = cfg.model
  np.testing.assert_array_equal(
      np.asarray(consts["noise_burst"]["noise_NxA"][...]),
      np.random.default_rng(NOISE_SEED).standard_normal((3, 1024)).astype(np.float32))
  np.testing.assert_array_equal(
      np.asarray(consts["room"]["spectra_RxQ"][...]),
      rooms.room_bank_spectra(m.blocks.room.n_rooms, m.n_samples, m.sample_rate,
                              m.blocks.room.room_seed))
  batch = np.random.default_rng(0).standard_normal((cfg.train.batch_size, m.n_samples))
  step = jax.jit(functools.partial(train_step.train_step, graphs=graphs, cfg=cfg))
  new_state, metrics = step(state, jnp.asarray(batch, jnp.float32) * 0.1)
  assert np.isfinite(float(metrics["loss"]))
  moved = np.abs(np.asarray(new_state.g_params["decoder"]["heads"]["out_w"]["burst_mix"][...])
                 - np.asarray(decoder["heads"]["out_w"]["burst_mix"][...])).max()
  assert moved > 0  # the new block's head is trained


def test_names_two_blocks_share_are_an_error(burst_config):
  @dataclasses.dataclass(frozen=True)
  class Clash(NoiseBurst):
    name = "clash"

    def heads(self):
      return {"mixes": (2,)}  # the resonance's head

  @dataclasses.dataclass(frozen=True)
  class TableClash(NoiseBurst):
    name = "table_clash"

    def tables(self, geo, init):
      return {"envelopes": init.uniform(0.1, (2, 2))}  # the attack's table

  for block_class in (Clash, TableClash):
    cfg = with_block(block_class, musicnet.get_config("tiny"), bank_size=3, burst_samples=1024,
                     seed=0)
    with pytest.raises(UserError, match="blocks '.*' and '.*' both declare the (head|table)"):
      config.validate(cfg)
  with pytest.raises(ValueError, match="'room' is taken"):
    blocks.register(blocks.Room)
  # A block needs its section, with exactly its settings.
  cfg = musicnet.get_config("tiny")
  del cfg.model.blocks["room"]
  with pytest.raises(UserError, match="model.blocks.room: no settings"):
    config.validate(cfg)
  cfg = musicnet.get_config("tiny")
  cfg.model.blocks.room.n_room = 3
  with pytest.raises(UserError, match="model.blocks.room has"):
    config.validate(cfg)
