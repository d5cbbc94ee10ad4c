"""Tests for sparse_jax.metrics: known signals, hand-computed values and direct numpy references."""
import numpy as np
import pytest
import scipy.signal

from sparse_jax import metrics

SR = 22050


def _music(seconds=1.0, seed=0):
  """A few decaying harmonic notes: broadband enough for every metric, deterministic."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  x = np.zeros_like(t)
  for f0, start in [(196.0, 0.0), (293.7, 0.2), (440.0, 0.45)]:
    env = np.where(t >= start, np.exp(-3.0 * (t - start)), 0.0)
    for h in range(1, 6):
      x += 0.2 / h * env * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
  return x


def test_identical_signals_score_perfectly():
  x = _music()
  assert metrics.multi_resolution_stft_distance(x, x) == 0.0
  assert metrics.log_mel_distance(x, x, SR) == 0.0
  assert 100.0 < metrics.si_sdr(x, x) < np.inf


def test_more_noise_is_monotonically_worse():
  x = _music()
  noise = np.random.default_rng(1).standard_normal(x.size)
  mr, mel, sdr = [], [], []
  for level in (0.003, 0.02, 0.1):
    y = x + level * noise
    mr.append(metrics.multi_resolution_stft_distance(x, y))
    mel.append(metrics.log_mel_distance(x, y, SR))
    sdr.append(metrics.si_sdr(x, y))
  assert 0.0 < mr[0] < mr[1] < mr[2]
  assert 0.0 < mel[0] < mel[1] < mel[2]
  assert sdr[0] > sdr[1] > sdr[2]


def test_mr_stft_of_half_scale_signal():
  # For a loud signal (every bin far above the power floor) and est = ref / 2, spectral convergence
  # is exactly 0.5 and the log term exactly log 2 at every resolution.
  x = np.random.default_rng(2).standard_normal(8192)
  assert metrics.multi_resolution_stft_distance(x, 0.5 * x) == pytest.approx(0.5 + np.log(2.0),
                                                                                abs=1e-3)


def test_si_sdr_hand_computed():
  # ref = sine over whole periods; est = 2 * ref + 0.5 * (orthogonal cosine of the same energy) +
  # a DC offset that the zero-mean step removes.  Target energy 4 |ref|^2, noise 0.25 |ref|^2.
  n = np.arange(4000)
  ref = np.sin(2 * np.pi * 10 * n / n.size)
  ortho = np.cos(2 * np.pi * 10 * n / n.size)
  est = 2.0 * ref + 0.5 * ortho + 0.3
  assert metrics.si_sdr(ref, est) == pytest.approx(10 * np.log10(4.0 / 0.25), abs=1e-9)


def test_si_sdr_is_scale_invariant():
  x = _music()
  y = x + 0.05 * np.random.default_rng(3).standard_normal(x.size)
  base = metrics.si_sdr(x, y)
  for scale in (0.01, 3.7, -2.0):
    assert metrics.si_sdr(x, scale * y) == pytest.approx(base, abs=1e-9)
  assert metrics.si_sdr(7.0 * x, y) == pytest.approx(base, abs=1e-9)


def test_stft_magnitude_matches_direct_loop():
  rng = np.random.default_rng(4)
  x = rng.standard_normal(1000)
  window, hop = 64, 16
  w = scipy.signal.get_window("hann", window)  # Periodic Hann.
  expected = np.zeros((window // 2 + 1, x.size // hop))
  for t in range(x.size // hop):
    frame = np.zeros(window)
    seg = x[hop * t:hop * t + window]
    frame[:seg.size] = seg
    expected[:, t] = np.abs(np.fft.rfft(frame * w)) / np.sqrt(window)
  np.testing.assert_allclose(metrics.stft_magnitude(x, window, hop), expected, atol=1e-12)


def test_stft_magnitude_default_shape_is_the_codecs():
  assert metrics.stft_magnitude(np.zeros(2**17)).shape == (1025, 512)


def test_spectral_energy_curve_perfect_silence_and_half():
  x = _music(0.5)
  curve = metrics.spectral_energy_curve(x, np.stack([x, np.zeros_like(x), 0.5 * x]))
  np.testing.assert_allclose(curve, [1.0, 0.0, 0.5], atol=1e-12)


def test_mel_scale_hand_values():
  # Slaney: 3 mels per 200 Hz below 1 kHz (1000 Hz -> 15), 27 mels per factor 6.4 above.
  np.testing.assert_allclose(metrics._hz_to_mel([0.0, 200.0, 1000.0, 6400.0]),
                             [0.0, 3.0, 15.0, 42.0], atol=1e-12)
  hz = np.array([50.0, 999.0, 1000.0, 4321.0, 11025.0])
  np.testing.assert_allclose(metrics._mel_to_hz(metrics._hz_to_mel(hz)), hz, rtol=1e-12)


def test_mel_filterbank_triangles_centres_and_area():
  sr, n_fft, n_mels = 22050, 2048, 40
  fb = metrics.mel_filterbank(sr, n_fft, n_mels)
  assert fb.shape == (n_mels, n_fft // 2 + 1)
  bin_hz = np.arange(n_fft // 2 + 1) * sr / n_fft
  # Edges equally spaced in Slaney mels from 0 to 11025 Hz (= 15 + 27 ln(11.025) / ln(6.4) mels).
  top_mel = 15.0 + 27.0 * np.log(11.025) / np.log(6.4)
  mels = np.linspace(0.0, top_mel, n_mels + 2)
  edges = np.where(mels < 15.0, mels * 200.0 / 3.0, 1000.0 * 6.4**((mels - 15.0) / 27.0))
  for i, row in enumerate(fb):
    lo, centre, hi = edges[i], edges[i + 1], edges[i + 2]
    # Zero outside (lo, hi), peak at the bin closest to the centre.
    assert np.all(row[(bin_hz <= lo) | (bin_hz >= hi)] == 0.0)
    assert abs(bin_hz[np.argmax(row)] - centre) <= sr / n_fft
    # A triangle: rises then falls.
    peak = np.argmax(row)
    assert np.all(np.diff(row[:peak + 1]) >= 0) and np.all(np.diff(row[peak:]) <= 0)
    # Slaney normalisation: peak height 2 / (hi - lo), i.e. unit area in Hz.
    assert row.max() <= 2.0 / (hi - lo) + 1e-15
    if hi - lo > 20 * sr / n_fft:  # Well-sampled triangles integrate to 1.
      assert np.sum(row) * sr / n_fft == pytest.approx(1.0, rel=0.02)


def test_align_recovers_delay_both_ways():
  x = _music(0.5)
  late = np.concatenate([np.zeros(37), x, np.zeros(100)])
  assert metrics.estimate_lag(x, late, 200) == 37
  np.testing.assert_allclose(metrics.align(x, late, 200), x, atol=1e-12)
  early = x[25:]
  assert metrics.estimate_lag(x, early, 200) == -25
  aligned = metrics.align(x, early, 200)
  assert aligned.shape == x.shape
  np.testing.assert_allclose(aligned[25:], x[25:], atol=1e-12)
  assert np.all(aligned[:25] == 0.0)


def test_length_mismatch_is_an_error():
  with pytest.raises(ValueError, match="align"):
    metrics.si_sdr(np.ones(10), np.ones(11))


def test_stft_is_the_complex_spectrogram_of_stft_magnitude():
  x = _music(0.3)
  spec = metrics.stft(x, 512, 128)
  assert np.iscomplexobj(spec) and spec.shape == (257, x.size // 128)
  np.testing.assert_allclose(np.abs(spec), metrics.stft_magnitude(x, 512, 128), rtol=1e-12)
  # Linear: what the encoder's decoded-error check relies on.
  y = _music(0.3, seed=1)
  np.testing.assert_allclose(metrics.stft(x + 0.5 * y, 512, 128),
                             spec + 0.5 * metrics.stft(y, 512, 128), atol=1e-12)


def test_visqol_orders_quality_and_floors_silence():
  if metrics.visqol_missing():
    pytest.skip(metrics.visqol_missing())
  x = _music(1.5)
  rng = np.random.default_rng(0)
  same = metrics.visqol(x, x, 22050)
  noisy = metrics.visqol(x, x + 0.05 * rng.standard_normal(x.size), 22050)
  assert 4.0 < same <= 5.0 and 1.0 <= noisy < same
  assert metrics.visqol(x, np.zeros_like(x), 22050) == 1.0


def test_visqol_missing_is_one_line(monkeypatch):
  import sys
  monkeypatch.setitem(sys.modules, "visqol", None)  # import visqol -> ImportError
  line = metrics.visqol_missing()
  assert "visqol-python" in line and "--no-visqol" in line and "\n" not in line
