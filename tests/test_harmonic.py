"""The pitched string (`blocks.Harmonic`): a harmonic comb at a chosen semitone, an envelope, a
decay; its pitch is a control the notes reader and the codec read."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import musicnet
from sparse_jax import blocks, config, synth
from sparse_jax.decoder import Decoder
from sparse_jax.errors import UserError
from sparse_jax.geometry import Geometry

GEO = Geometry(n_samples=2**14, window=512, hop=128, sample_rate=22050)
BLOCK = blocks.Harmonic(lowest_midi=28, n_pitches=73, n_harmonics=0, n_bands=16, shortest_decay_s=0.1,
                        longest_decay_s=8.0)


def test_combs_are_the_sum_of_every_harmonic_below_045_of_the_rate():
  sr, t = 22050, np.arange(3000)
  combs = synth.harmonic_combs([40, 69], 3000, sr)
  for row, midi in enumerate([40, 69]):
    hz = 440 * 2 ** ((midi - 69) / 12)
    direct = sum(np.sin(2 * np.pi * k * hz * t / sr) for k in range(1, int(0.45 * sr / hz) + 1))
    np.testing.assert_allclose(combs[row], direct / np.linalg.norm(direct), atol=1e-6)
  # Capped: the first 5 harmonics only.
  hz = 440 * 2 ** ((40 - 69) / 12)
  direct = sum(np.sin(2 * np.pi * k * hz * t / sr) for k in range(1, 6))
  np.testing.assert_allclose(synth.harmonic_combs([40], 3000, sr, max_harmonics=5)[0],
                             direct / np.linalg.norm(direct), atol=1e-6)


def test_band_weights_interpolate_between_log_spaced_centres():
  w = synth.band_interpolation(4, 1025, 22050, lowest_hz=40.0)
  np.testing.assert_allclose(w.sum(0), 1.0, atol=1e-6)  # a flat timbre is a flat envelope
  hz = np.linspace(0, 11025, 1025)
  centres = np.geomspace(40.0, 11025, 4)
  gains = np.array([1.0, 2.0, 4.0, 8.0])
  env = gains @ w
  below = hz <= 40.0
  np.testing.assert_allclose(env[below], 1.0, atol=1e-6)
  # Halfway between two centres in log frequency, halfway between their gains.
  mid = np.sqrt(centres[1] * centres[2])
  i = np.argmin(np.abs(hz - mid))
  expect = np.interp(np.log(hz[i]), np.log(centres), gains)
  assert env[i] == pytest.approx(expect, rel=1e-5)
  assert 2.0 < env[i] < 4.0


def _controls(midi, decay_s, timbre=1.0):
  logits = jnp.full((BLOCK.n_pitches,), -5.0).at[midi - BLOCK.lowest_midi].set(5.0)
  return {"pitch_P": synth.hard_choice(logits), "timbre_M": jnp.full((BLOCK.n_bands,), timbre),
          "decay_s": jnp.float32(decay_s), "mix_2": jnp.array([-30.0, 30.0])}


def test_an_impulse_rings_as_the_chosen_pitch_decaying_60_db_in_decay_s():
  consts = {k: jnp.asarray(v) for k, v in BLOCK.constants(GEO).items()}
  impulse = jnp.zeros(64).at[0].set(1.0)
  out = np.asarray(BLOCK.render(impulse, _controls(57, 0.5), consts, GEO))
  # Golden reference: an impulse through a flat envelope is the comb itself, times the decay.
  t = np.arange(GEO.n_samples) / GEO.sample_rate
  comb = synth.harmonic_combs([57], GEO.n_samples, GEO.sample_rate)[0]
  np.testing.assert_allclose(out, comb * np.exp(-6.907755 * t / 0.5), atol=2e-5)
  # Heard: its strongest partials are the harmonics of A3 (220 Hz), and it has no energy below.
  spectrum = np.abs(np.fft.rfft(out[:8192] * np.hanning(8192)))
  hz = np.fft.rfftfreq(8192, 1 / GEO.sample_rate)
  peaks = hz[np.argsort(spectrum)[-40:]]
  harmonic = np.round(peaks / 220.0)
  assert np.all(harmonic >= 1)
  assert np.max(np.abs(peaks - 220.0 * harmonic)) < 2 * GEO.sample_rate / 8192
  # 30 dB down at half the decay time.
  frame = lambda s: np.sqrt(np.mean(out[int(s * GEO.sample_rate):][:2205] ** 2))
  level = 20 * np.log10(frame(0.25) / frame(0.0))
  assert level == pytest.approx(-30.0, abs=1.5)


def test_every_pitch_gets_a_gradient_through_the_hard_choice():
  consts = {k: jnp.asarray(v) for k, v in BLOCK.constants(GEO).items()}
  impulse = jnp.zeros(64).at[0].set(1.0)
  # A target an octave above the chosen pitch: choosing A4 instead of A3 must pay.
  target = np.asarray(BLOCK.render(impulse, _controls(69, 0.5), consts, GEO))

  def loss(logits):
    ctl = dict(_controls(57, 0.5), pitch_P=synth.hard_choice(logits))
    return jnp.sum((BLOCK.render(impulse, ctl, consts, GEO) - target) ** 2)

  logits = jnp.full((BLOCK.n_pitches,), -5.0).at[57 - BLOCK.lowest_midi].set(5.0)
  np.testing.assert_array_equal(synth.hard_choice(logits),
                                jax.nn.one_hot(57 - BLOCK.lowest_midi, BLOCK.n_pitches))
  grad = np.asarray(jax.grad(loss)(logits))
  assert np.count_nonzero(grad) == BLOCK.n_pitches  # straight-through: every pitch learns
  assert np.argmin(grad) == 69 - BLOCK.lowest_midi  # and the target's pitch most of all


def test_the_decoder_reads_the_chosen_pitch_and_a_pitchless_chain_has_none():
  cfg = musicnet.get_config("tiny")
  cfg.model.chain = ("attack", "harmonic", "room")
  config.validate(cfg)
  decoder = Decoder(cfg.model, nnx.Rngs(0))
  vectors = jax.random.normal(jax.random.key(1), (8, cfg.model.event_dim))
  midi, sounded = decoder.pitches(vectors)
  heads = decoder.heads(vectors)["harmonic"]
  np.testing.assert_array_equal(np.asarray(midi), 28 + np.argmax(heads["pitch"], axis=-1))
  np.testing.assert_array_equal(np.asarray(sounded),
                                np.asarray(heads["mixes"][:, 1] >= heads["mixes"][:, 0]))
  assert Decoder(musicnet.get_config("tiny").model, nnx.Rngs(0)).pitches(vectors) is None
  # Bad settings: one line, before any bank is built.
  for field, value in (("n_pitches", 0), ("lowest_midi", 120), ("shortest_decay_s", 9.0)):
    bad = musicnet.get_config("tiny")
    bad.model.chain = ("attack", "harmonic", "room")
    bad.model.blocks.harmonic[field] = value
    with pytest.raises(UserError, match="model.blocks.harmonic: .* needs MIDI notes 0-127"):
      config.validate(bad)


def test_transpose_moves_the_chosen_pitch_and_keeps_times_and_gains(tmp_path):
  import codec_fixtures

  from sparse_jax.codec import events as events_lib
  from sparse_jax.codec import runtime, transpose
  cfg = musicnet.get_config("tiny")
  cfg.model.chain = ("attack", "harmonic", "room")
  codec = runtime.Codec.from_workdir(codec_fixtures.save_untrained_workdir(str(tmp_path), cfg))
  # An untrained pitch head's logits span ~0.2 (every note nearly as likely); a trained one's
  # span tens: scaled so, the head decides as a trained one does.
  w = codec.g_params["decoder"]["heads"]["out_w"]["harmonic"]["pitch"]
  w[...] = w[...] * 30
  n = 12
  vectors = np.asarray(jax.random.normal(jax.random.key(3), (n, cfg.model.event_dim)))
  events = events_lib.EventSet(
      frames=np.arange(n, dtype=np.int64) * 4, offsets=np.zeros(n, np.float32),
      gains=np.ones(n, np.float32), vectors=vectors, sample_rate=codec.sample_rate,
      hop=codec.hop, window_samples=codec.n_samples, n_audio_samples=codec.n_samples * 2,
      model_id=codec.model_id)
  before = codec.midi_pitches(vectors)
  moved, report = transpose.transpose(codec, events, 2)
  after = codec.midi_pitches(moved.vectors)
  changed = np.any(moved.vectors != vectors, axis=1)
  assert report["moved"] == changed.sum() >= report["pitched"] // 2 > 0
  np.testing.assert_array_equal(after[changed], before[changed] + 2)
  np.testing.assert_array_equal(moved.vectors[~changed], vectors[~changed])
  np.testing.assert_array_equal(moved.frames, events.frames)  # times and gains untouched
  np.testing.assert_array_equal(moved.gains, events.gains)
  # A model without a pitch control says so in one line.
  with pytest.raises(Exception, match="no pitch control"):
    transpose.transpose(codec_fixtures.tiny_codec(), events, 2)
