"""Representation-health figures on sets of vectors whose answer is known."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparse_jax import representation as rep


def test_effective_rank_of_known_spectra():
  rng = np.random.default_rng(0)
  # One direction, any lengths (and an offset, which centring removes): rank 1.
  line = rng.standard_normal((200, 1)) * rng.standard_normal((1, 16)) + 5.0
  assert float(rep.effective_rank(line)) == pytest.approx(1.0, abs=1e-3)
  # Equal singular values on k axes: rank k exactly.
  for k in (2, 5):
    basis = np.linalg.qr(rng.standard_normal((16, k)))[0].T  # k orthonormal rows
    signs = np.array([[1.0] * k, [-1.0] * k])
    x = np.concatenate([s[:, None] * basis for s in signs]).reshape(-1, 16)
    # +-e_i for each axis: centred, the singular values are equal.
    assert float(rep.effective_rank(x)) == pytest.approx(k, rel=1e-4)
  # Isotropic Gaussian: close to D (sampling spreads the singular values a little).
  assert 15.0 < float(rep.effective_rank(rng.standard_normal((4000, 16)))) <= 16.0
  # Under jit, as the train step computes it.
  assert float(jax.jit(rep.effective_rank)(jnp.asarray(line))) == pytest.approx(1.0, abs=1e-3)


def test_mean_abs_cosine_of_known_sets():
  rng = np.random.default_rng(1)
  u = rng.standard_normal(8)
  scaled = np.outer(rng.uniform(0.1, 3.0, 50) * rng.choice([-1, 1], 50), u)
  assert float(rep.mean_abs_cosine(scaled)) == pytest.approx(1.0, abs=1e-6)
  assert float(rep.mean_abs_cosine(np.eye(8))) == pytest.approx(0.0, abs=1e-7)
  # Two vectors at 60 degrees: |cos| = 0.5 for both ordered pairs.
  pair = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]])
  assert float(rep.mean_abs_cosine(pair)) == pytest.approx(0.5, abs=1e-6)
  random = rng.standard_normal((2000, 32))
  assert float(rep.mean_abs_cosine(random)) == pytest.approx(np.sqrt(2 / (np.pi * 32)), rel=0.05)


def test_spectral_centroid_of_sines_and_silence():
  sr, n = 22050, 4096
  t = np.arange(n) / sr
  freqs = np.array([441.0, 2205.0])  # between bins: the window cuts them off mid-cycle
  sines = np.sin(2 * np.pi * freqs[:, None] * t)
  centroids = rep.spectral_centroids_hz(np.concatenate([sines, np.zeros((1, n))]), sr)
  np.testing.assert_allclose(centroids[:2], freqs, rtol=0.02)
  assert np.isnan(centroids[2])


def test_table_usage_counts_used_and_dominant_rows():
  # 3 events, resonance head with 2 channels over 5 rows; a room head over 4 rows.
  res = np.array([[[1.0, -1, 0, 0, 0], [0, 2.0, -1, 0, 0]],
                  [[3.0, 0, 0, 0, 0], [0, 0.5, 0, 0, 0]],
                  [[0.1, 0, 0, 0, 0.2], [-1, -1, -1, -1, -1]]])
  rooms = np.array([[0.0, 0.3, 0, 0], [0, 0.9, 0, 0], [0, 0.2, 0.1, 0]])
  usage = rep.table_usage({"resonance": {"resonances": res, "mixes": res[..., :2]},
                           "room": {"room_choice": rooms}})
  assert usage["resonance"] == {"resonances": {"rows": 5, "rows_used": 3, "dominant_rows": 3}}
  # Rows 0 (twice), 1 (twice), 4: the silent last channel chooses nothing.
  assert usage["room"] == {"rooms": {"rows": 4, "rows_used": 2, "dominant_rows": 1}}


def test_summarize_leaves_silent_events_out_and_counts_first_frames():
  rng = np.random.default_rng(2)
  vectors = rng.standard_normal((10, 4))
  frames = np.array([0, 1, 3, 4, 10, 20, 2, 50, 60, 70])
  gains = np.array([1.0] * 8 + [0.0, 0.0])
  out = rep.summarize(vectors, frames, gains)
  assert out["events"] == 8 and out["silent_events"] == 2
  assert out["first_frames_share"] == pytest.approx(4 / 8)  # frames 0, 1, 3, 2 of the sounding 8
  assert out["effective_rank"] == pytest.approx(float(rep.effective_rank(vectors[:8])))
  assert "tables" not in out and "centroid_spread_octaves" not in out
  assert rep.summarize(vectors[:1], frames[:1], gains[:1]) == {"events": 1, "silent_events": 0}


def test_stacked_share_counts_events_on_a_frame_already_taken_in_their_window():
  vectors = np.random.default_rng(3).standard_normal((8, 4))
  # Window 0: frames 5, 5, 5, 9 (two stacked); window 1: 5, 9, 9 (one), then a silent event on 9.
  frames = np.array([5, 5, 5, 9, 5, 9, 9, 9])
  windows = np.array([0, 0, 0, 0, 1, 1, 1, 1])
  gains = np.array([1.0] * 7 + [0.0])
  out = rep.summarize(vectors, frames, gains, windows_E=windows)
  assert out["stacked_share"] == pytest.approx(3 / 7)
  assert "stacked_share" not in rep.summarize(vectors, frames, gains)


def test_figures_are_the_same_on_a_batch_sharded_array():
  # Inside the train step the events are split over the ('data',) mesh axis.
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  x = jax.random.normal(jax.random.key(0), (64, 16))
  mesh = jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  figures = jax.jit(lambda v: (rep.effective_rank(v), rep.mean_abs_cosine(v),
                               rep.mean_squared_cosine(v),
                               jnp.abs(jax.grad(rep.mean_squared_cosine)(v)).sum()))
  with jax.set_mesh(mesh):
    sharded = figures(jax.device_put(x, NamedSharding(mesh, P("data"))))
  np.testing.assert_allclose(sharded, figures(x), rtol=1e-5)


def test_mean_squared_cosine_is_one_for_a_line_and_one_over_d_for_an_even_spread():
  rng = np.random.default_rng(3)
  line = np.outer(rng.uniform(0.5, 2, 40) * rng.choice([-1, 1], 40), rng.standard_normal(8))
  assert float(rep.mean_squared_cosine(line)) == pytest.approx(1.0, rel=1e-5)
  axes = np.concatenate([np.eye(8), -np.eye(8)])  # an even spread: +-e_i
  assert float(rep.mean_squared_cosine(axes)) == pytest.approx(1 / 8, rel=1e-5)
  # The pairwise definition, on random vectors.
  x = rng.standard_normal((30, 5))
  u = x / np.linalg.norm(x, axis=1, keepdims=True)
  assert float(rep.mean_squared_cosine(x)) == pytest.approx(np.mean((u @ u.T) ** 2), rel=1e-5)


def test_energy_durations_of_known_envelopes():
  # A constant tone over 1000 samples: 10% to 90% of its energy is 800 samples.  An exponential
  # decay exp(-t / tau) in power: the running energy is 1 - exp(-t / tau), so tau * ln(9).
  sr, t = 1000, np.arange(4000)
  flat = np.where((t >= 500) & (t < 1500), 1.0, 0.0)
  tau = 100.0
  decay = np.exp(-t / (2 * tau))  # amplitude, so the power decays with tau
  got = rep.energy_durations_s(np.stack([flat, decay, np.zeros(4000)]), sr)
  assert got[0] == pytest.approx(0.8, abs=2e-3)
  assert got[1] == pytest.approx(tau * np.log(9) / sr, abs=2e-3)
  assert np.isnan(got[2])

