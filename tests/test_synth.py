"""The decoder's DSP blocks against known signals, and the room bank's physics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparse_jax import blocks, rooms, signal, synth


def test_sparse_softmax_forward_is_scaled_one_hot_backward_is_softmax():
  logits = jnp.array([[0.1, 2.0, -1.0, 0.5]])
  soft = jax.nn.softmax(logits)
  out = synth.sparse_softmax(logits)
  np.testing.assert_allclose(out, [[0, soft[0, 1], 0, 0]], atol=1e-7)
  w = jnp.array([[1.0, -2.0, 3.0, 0.5]])
  g_sparse = jax.grad(lambda x: jnp.sum(synth.sparse_softmax(x) * w))(logits)
  g_soft = jax.grad(lambda x: jnp.sum(jax.nn.softmax(x) * w))(logits)
  np.testing.assert_allclose(g_sparse, g_soft, atol=1e-6)


def test_energy_impulse_is_positive_triangles_at_the_argmax():
  points, length = 32, 1024
  logits = jnp.full((2, points), -20.0).at[0, 5].set(20.0).at[1, 20].set(20.0)
  env = np.asarray(synth.energy_impulse(logits, length))
  assert env.min() >= 0
  factor = length // points
  for spike in (5, 20):  # each spike becomes a triangle centred on its stretched position
    centre = spike * factor + factor // 2
    assert env[centre - 1:centre + 1].max() == pytest.approx(env.max(), rel=1e-3)
    assert env[(spike - 1) * factor] < 0.05 * env.max()
  assert env[:4 * factor].max() < 1e-6  # nothing before the first spike's triangle
  assert env[10 * factor:19 * factor].max() < 1e-6  # nor between the two


def test_deformation_masks_sum_to_one_and_drift_with_cumsum():
  deform = jnp.zeros((3, 16)).at[1, :].set(1.0)  # channel 1 grows every frame
  masks = np.asarray(synth.deformation_masks(deform, 16 * 8))
  np.testing.assert_allclose(masks.sum(0), 1.0, atol=1e-6)
  assert masks[1, -1] > 0.99 and masks[1, 0] < masks[1, -1]


def test_fft_resonance_single_partial_frequency_and_decay():
  window, n = 256, 4096
  n_bins = window // 2 + 1
  k = 20
  params = np.zeros((1, 3 * n_bins), np.float32)
  params[0, 2 * n_bins:] = -30.0  # start magnitude ~0 everywhere ...
  params[0, 2 * n_bins + k] = 30.0  # ... but bin k
  params[0, k] = 1.0  # decay factor of bin k: 0.5 + 0.5*0.9999*sigmoid(1)
  res = np.asarray(synth.fft_resonances(jnp.asarray(params), n, window))[0]
  assert np.linalg.norm(res) == pytest.approx(1.0, abs=1e-4)
  hop = window // 2
  spectrum = np.abs(np.fft.rfft(res * np.hanning(n)))
  # Bin k of the frames, plus the offset of the model's fixed per-frame phase ramp pi*k/(F-1)
  # (not phase-continuous; kept from the paper): k / (2 (F-1) hop) cycles per sample.
  expected = k * n / window + n * k / (2 * (n_bins - 1) * hop)
  assert abs(np.argmax(spectrum) - expected) <= 1
  decay = 0.5 + 0.5 * 0.9999 / (1 + np.exp(-1.0))
  frame_energy = np.array([np.sum(res[i * hop:(i + 1) * hop] ** 2) for i in range(2, 8)])
  ratio = np.sqrt(frame_energy[1:] / frame_energy[:-1])
  np.testing.assert_allclose(ratio, decay, rtol=0.05)


def test_room_bank_is_deterministic_peak_normalised_and_decays_as_designed():
  sr, n = 22050, 2**16
  bank = rooms.room_impulse_responses(6, n, sr, seed=3)
  np.testing.assert_array_equal(bank, rooms.room_impulse_responses(6, n, sr, seed=3))
  np.testing.assert_allclose(bank.max(axis=1), 1.0, atol=1e-6)
  design = np.array([p[0] for p in rooms._room_parameters(6, np.random.default_rng(3))])
  # Schroeder backward integration: the time the energy decay curve falls from -5 to -25 dB,
  # extrapolated to 60 dB (T20), must follow the designed mid-band RT60.
  measured = []
  for rir in bank:
    late = rir[int(0.02 * sr):]  # past the direct sound and first reflections
    edc = np.cumsum((late ** 2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0] + 1e-20)
    t5, t25 = np.argmax(edc_db < -5), np.argmax(edc_db < -25)
    measured.append(3.0 * (t25 - t5) / sr)
  measured = np.array(measured)
  assert np.corrcoef(np.log(design), np.log(measured))[0, 1] > 0.95
  np.testing.assert_allclose(measured, design, rtol=0.5)


def _render_event(controls, spectra, n, window, hop, attack_samples, chain=None):
  """One event through the default chain of blocks (or `chain`), then the schedule."""
  s, p = controls["envelope_IxP"].shape
  geo = blocks.Geometry(n, window, hop)
  # Only what rendering reads matters: the attack's sizes (the rest shape parameters).
  sections = {"attack": dict(n_envelopes=1, envelope_spikes=s, envelope_points=p,
                             attack_samples=attack_samples, n_noise_filters=1,
                             noise_filter_samples=1, noise_expressivity=1, n_noise_deformations=1),
              "resonance": dict(n_resonances=1, instr_expressivity=1, n_deformations=1),
              "room": dict(n_rooms=spectra.shape[0], room_seed=0)}
  chain = blocks.chain_of(chain or blocks.DEFAULT_BLOCKS, sections)
  # The flat controls of these tests, each under its block (as the decoder hands them over).
  owners = {"attack": ("envelope_IxP", "noise_filters_CxL", "noise_deform_CxN", "noise_mix_2"),
            "resonance": ("resonance_params_Cx3F", "deform_CxN", "mix_2"),
            "room": ("room_weights_R", "room_mix_2")}
  by_block = {k: controls[k] for k in ("frame", "gain", "fine")}
  by_block.update({block: {k: controls[k] for k in names} for block, names in owners.items()})
  return np.asarray(blocks.render_event(by_block, {"room": {"spectra_RxQ": jnp.asarray(spectra)}},
                                        geo, chain))


@pytest.mark.slow
def test_render_event_is_silent_before_its_frame_and_scales_with_gain():
  window, hop, n = 256, 64, 4096
  n_bins = window // 2 + 1
  rng = np.random.default_rng(0)
  spectra = rooms.room_bank_spectra(2, n, 22050, 0)
  controls = {
      "envelope_IxP": jnp.asarray(rng.standard_normal((2, 16)), jnp.float32),
      "noise_filters_CxL": jnp.asarray(rng.standard_normal((2, 16)), jnp.float32),
      "noise_deform_CxN": jnp.zeros((2, n // hop)),
      "noise_mix_2": jnp.zeros(2),
      "resonance_params_Cx3F": jnp.asarray(rng.standard_normal((2, 3 * n_bins)), jnp.float32),
      "deform_CxN": jnp.zeros((2, n // hop)),
      "mix_2": jnp.zeros(2),
      "room_weights_R": jnp.array([0.5, 0.5]),
      "room_mix_2": jnp.zeros(2),
      "fine": jnp.array(0.0),
      "frame": jnp.array(10),
      "gain": jnp.array(1.0),
  }
  render = lambda c: _render_event(c, spectra, n, window, hop, 256)
  audio = render(controls)
  assert np.abs(audio[:10 * hop]).max() < 1e-5
  assert np.abs(audio[10 * hop:]).max() > 1e-3
  np.testing.assert_allclose(render(dict(controls, gain=jnp.array(2.5))), 2.5 * audio, atol=1e-5)
  assert np.abs(render(dict(controls, gain=jnp.array(0.0)))).max() == 0.0
  # The whole-window view: the same event at frame 0 is the frame-10 event moved back 640 samples.
  at_zero = render(dict(controls, frame=jnp.array(0)))
  np.testing.assert_allclose(audio[10 * hop:], at_zero[:n - 10 * hop], atol=1e-5)


def test_smooth_fft_size():
  assert synth.smooth_size(1000) == 1024
  assert synth.smooth_size(131072 + 8319) == 139968  # 2^6 * 3^7, not 2^18
  for n in (17, 1000, 5000, 139391):
    size = synth.smooth_size(n)
    assert size >= n and size <= signal.fft_size(n)


def _event_controls(n, hop, window, *, click=False, seed=0):
  """Controls of one event; `click=True` keeps only the attack's dry spike (no noise, no
  resonance, no room), so the event is one short triangle at its first samples."""
  n_bins = window // 2 + 1
  rng = np.random.default_rng(seed)
  dry = jnp.array([30.0, -30.0])
  envelope = (jnp.full((1, 16), -30.0).at[0, 0].set(30.0) if click
              else jnp.asarray(rng.standard_normal((2, 16)), jnp.float32))
  return {
      "envelope_IxP": envelope,
      "noise_filters_CxL": jnp.asarray(rng.standard_normal((2, 16)), jnp.float32),
      "noise_deform_CxN": jnp.zeros((2, n // hop)),
      "noise_mix_2": dry if click else jnp.zeros(2),
      "resonance_params_Cx3F": jnp.asarray(rng.standard_normal((2, 3 * n_bins)), jnp.float32),
      "deform_CxN": jnp.zeros((2, n // hop)),
      "mix_2": dry if click else jnp.zeros(2),
      "room_weights_R": jnp.array([0.5, 0.5]),
      "room_mix_2": -dry if click else jnp.zeros(2),  # the room's dry weight is its second
      "fine": jnp.array(0.0),
      "frame": jnp.array(0),
      "gain": jnp.array(1.0),
  }


def _render(controls, n, hop, window):
  spectra = jnp.asarray(rooms.room_bank_spectra(2, n, 22050, 0))
  return np.asarray(_render_event(controls, spectra, n, window, hop, 512), np.float64)


def _paper_schedule(event_T, delay_int, shift):
  """The paper's order, in float64 numpy: delay by whole samples dropping what passes T, then
  the fine shift as a phase ramp on the 2T zero-padded result, cropped to T."""
  t = event_T.size
  scheduled = np.concatenate([np.zeros(delay_int), event_T[:t - delay_int]])
  k = np.arange(t + 1)
  ramp = np.exp(-2j * np.pi * k * shift / (2 * t))
  return np.fft.irfft(np.fft.rfft(scheduled, 2 * t) * ramp, 2 * t)[:t]


@pytest.mark.parametrize("shift", [-150.0, 150.0])
def test_fine_shift_moves_a_click_by_whole_samples_with_its_full_energy(shift):
  n, hop, window, frame = 8192, 256, 1024, 5
  base = _event_controls(n, hop, window, click=True)
  click = _render(base, n, hop, window)  # at sample 0, no shift
  support = np.flatnonzero(np.abs(click) > 1e-6 * np.abs(click).max())
  assert support[0] == 0 and support[-1] < 100  # a short triangle from the first sample
  moved = _render(dict(base, frame=jnp.array(frame), fine=jnp.array(shift)), n, hop, window)
  onset = hop * frame + int(shift)
  # It lands at hop * frame + shift, whole, and nothing sounds before it or wraps from the end.
  np.testing.assert_allclose(moved[onset:onset + 100], click[:100], atol=1e-5)
  assert np.sum(moved ** 2) == pytest.approx(np.sum(click ** 2), rel=1e-4)
  assert np.abs(moved[:onset]).max() < 1e-5
  assert np.abs(moved[onset + 100:]).max() < 1e-5


@pytest.mark.parametrize("shift", [-150.5, -37.25, 0.0, 99.75, 150.0])
def test_render_event_schedules_then_shifts_in_the_papers_order(shift):
  # A full event (noise attack, resonances, room): its sound fills the whole window, so a shift
  # applied before the crop or before the schedule would wrap sound from one end to the other.
  n, hop, window = 8192, 256, 1024
  base = _event_controls(n, hop, window, seed=1)
  at_zero = _render(base, n, hop, window)
  assert np.abs(at_zero[-hop:]).max() > 1e-3 * np.abs(at_zero).max()  # sound up to the end
  for frame in (0, 3, 20):
    got = _render(dict(base, frame=jnp.array(frame), fine=jnp.array(shift)), n, hop, window)
    want = _paper_schedule(at_zero, hop * frame, shift)
    np.testing.assert_allclose(got, want, atol=2e-5 * np.abs(want).max())
    if shift < 0 and frame > 0:
      # The onset survives a negative shift: the event's first samples are all there.
      onset = hop * frame + int(np.ceil(shift))
      np.testing.assert_allclose(got[onset:onset + 64], at_zero[:64], atol=0.02 * np.abs(
          at_zero).max())


def test_a_block_can_be_left_out_of_the_chain():
  # The room block off: the event is the attack and resonance alone, which is what the full chain
  # renders with the room's mix fully dry.
  n, hop, window = 8192, 256, 1024
  spectra = rooms.room_bank_spectra(2, n, 22050, 0)
  base = _event_controls(n, hop, window, seed=2)
  no_room = _render_event(base, spectra, n, window, hop, 512, chain=("attack", "resonance"))
  dry_room = _render_event(dict(base, room_mix_2=jnp.array([-40.0, 40.0])), spectra, n, window,
                           hop, 512)
  np.testing.assert_allclose(no_room, dry_room, atol=1e-6 * np.abs(dry_room).max())
  # With the room on (half wet), its tail adds energy to the window's second half.
  with_room = _render_event(base, spectra, n, window, hop, 512)
  late = slice(n // 2, None)
  assert np.sum(with_room[late] ** 2) > 1.2 * np.sum(no_room[late] ** 2)
  with pytest.raises(ValueError, match="the attack first"):
    blocks.chain_of(("resonance", "attack"), {})
  with pytest.raises(ValueError, match="the attack first"):
    blocks.chain_of(("attack", "reverb"), {})


@pytest.mark.slow
def test_a_decoder_without_a_block_has_neither_its_heads_nor_its_constants():
  from flax import nnx

  from configs import musicnet
  from sparse_jax.decoder import Decoder, head_sizes
  cfg = musicnet.get_config("tiny").model
  full = head_sizes(cfg)
  cfg.chain = ("attack", "resonance")
  assert set(full) - set(head_sizes(cfg)) == {"room"}
  assert set(full["room"]) == {"room_choice", "room_mix"}
  decoder = nnx.eval_shape(lambda: Decoder(cfg, nnx.Rngs(0)))
  assert "room" not in decoder.constants
  audio, _ = Decoder(cfg, nnx.Rngs(0))(jnp.ones((2, cfg.event_dim)), jnp.array([0, 3]),
                                       jnp.ones(2))
  assert audio.shape == (2, cfg.n_samples) and np.all(np.isfinite(np.asarray(audio)))
