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
  # Its heads and tables live under its own name.
  assert set(decoder["heads"]["out_w"]["noise_burst"]) == {"burst_filter", "burst_choice",
                                                            "burst_mix"}
  assert decoder["tables"]["noise_burst"]["burst_filters"][...].shape == (4, 16)
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
  mix_w = lambda params: np.asarray(
      params["decoder"]["heads"]["out_w"]["noise_burst"]["burst_mix"][...])
  moved = np.abs(mix_w(new_state.g_params) - mix_w(state.g_params)).max()
  assert moved > 0  # the new block's head is trained


def test_two_blocks_may_use_the_same_words_each_in_its_own_namespace():
  @dataclasses.dataclass(frozen=True)
  class SameWords(NoiseBurst):
    name = "same_words"

    def heads(self):  # the resonance's head and the attack's table, by name
      return {"mixes": (2,), "burst_filter": (4,), "burst_choice": (self.bank_size,),
              "burst_mix": (2,)}

    def tables(self, geo, init):
      return {"burst_filters": init.uniform(0.1, (4, 16)),
              "envelopes": init.uniform(0.1, (2, 2))}

  cfg = with_block(SameWords, musicnet.get_config("tiny"), bank_size=3, burst_samples=1024,
                   seed=0)
  config.validate(cfg)
  from flax import nnx

  from sparse_jax.decoder import Decoder
  decoder = Decoder(cfg.model, nnx.Rngs(0))
  assert decoder.tables["same_words"]["envelopes"].shape == (2, 2)
  assert decoder.tables["attack"]["envelopes"].shape[0] == cfg.model.blocks.attack.n_envelopes
  controls = decoder.controls(jnp.ones((2, cfg.model.event_dim)), jnp.zeros(2, jnp.int32),
                              jnp.ones(2))
  assert set(controls) == {"attack", "same_words", "resonance", "room", "frame", "gain", "fine"}
  assert controls["same_words"]["burst_mix_2"].shape == (2, 2)
  # A block may not take a name of the schedule's, nor another block's.
  for taken in ("room", "fine"):
    with pytest.raises(ValueError, match=f"'{taken}' is taken"):
      blocks.register(type("Taken", (NoiseBurst,), {"name": taken}))
  # A block needs its section, with exactly its settings.
  cfg = musicnet.get_config("tiny")
  del cfg.model.blocks["room"]
  with pytest.raises(UserError, match="model.blocks.room: no settings"):
    config.validate(cfg)
  cfg = musicnet.get_config("tiny")
  cfg.model.blocks.room.n_room = 3
  with pytest.raises(UserError, match="model.blocks.room has"):
    config.validate(cfg)
