"""Signal ops against numpy/scipy references and known signals."""
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from sparse_jax import signal


def numpy_stft_magnitude(x, window, hop):
  """The spec's STFT, frame by frame: periodic Hann, rfft ortho, right-padded, no centring."""
  win = scipy.signal.get_window("hann", window, fftbins=True)
  padded = np.concatenate([x, np.zeros(window)])
  frames = [np.fft.rfft(padded[t * hop:t * hop + window] * win, norm="ortho")
            for t in range(len(x) // hop)]
  return np.abs(np.array(frames)).T


def test_hann_is_periodic_scipy_window():
  np.testing.assert_allclose(signal.hann_periodic(512),
                             scipy.signal.get_window("hann", 512, fftbins=True), atol=1e-7)


@pytest.mark.parametrize("window,hop", [(256, 64), (2048, 256)])
def test_stft_matches_numpy_reference(window, hop):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(8 * window).astype(np.float32)
  got = np.asarray(signal.stft_magnitude(jnp.asarray(x), window, hop))
  want = numpy_stft_magnitude(x.astype(np.float64), window, hop)
  assert got.shape == (window // 2 + 1, len(x) // hop)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_stft_paper_shape():
  spec = signal.stft_magnitude(jnp.zeros((1, 2**17)), 2048, 256)
  assert spec.shape == (1, 1025, 512)


def test_stft_sine_peaks_at_its_bin():
  sr, window = 22050, 2048
  k = 100
  t = np.arange(2**14) / sr
  x = np.sin(2 * np.pi * (k * sr / window) * t).astype(np.float32)
  spec = np.asarray(signal.stft_magnitude(jnp.asarray(x), window, 256))
  assert np.all(np.argmax(spec[:, :40], axis=0) == k)


def test_fft_convolve_matches_np_convolve_without_wrap():
  rng = np.random.default_rng(1)
  a = rng.standard_normal((3, 1000)).astype(np.float32)
  b = rng.standard_normal((3, 700)).astype(np.float32)
  got = np.asarray(signal.fft_convolve(jnp.asarray(a), jnp.asarray(b)))
  want = np.stack([np.convolve(a[i], b[i])[:1000] for i in range(3)])
  np.testing.assert_allclose(got, want, atol=2e-4)


def test_fft_convolve_with_explicit_non_power_of_two_length():
  rng = np.random.default_rng(2)
  a, b = rng.standard_normal(600), rng.standard_normal(600)
  got = np.asarray(signal.fft_convolve(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32),
                                       fft_len=1296))  # 2^4 * 3^4 >= 1199
  np.testing.assert_allclose(got, np.convolve(a, b)[:600], atol=2e-4)


@pytest.mark.parametrize("frame", [0, 1, 300, 511])
def test_impulse_scheduled_at_frame_k_lands_at_256k(frame):
  x = np.zeros(2**17, np.float32)
  x[0] = 1.0
  y = np.asarray(signal.schedule(jnp.asarray(x), jnp.array(frame), jnp.array(0.75), 256))
  assert np.argmax(np.abs(y)) == 256 * frame
  assert y[256 * frame] == pytest.approx(0.75, abs=1e-5)
  assert np.abs(np.delete(y, 256 * frame)).max() < 1e-5


def test_schedule_equals_convolution_with_scaled_one_hot():
  rng = np.random.default_rng(3)
  n, hop, frame, gain = 4096, 64, 37, 1.7
  x = rng.standard_normal(n).astype(np.float32)
  one_hot = np.zeros(n)
  one_hot[hop * frame] = gain
  want = np.convolve(x, one_hot)[:n]
  got = np.asarray(signal.schedule(jnp.asarray(x), jnp.array(frame), jnp.array(gain), hop))
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_fine_shift_moves_a_click_by_whole_samples():
  x = np.zeros(4096, np.float32)
  x[100] = 1.0
  for shift in (1, 7, 200):
    y = np.asarray(signal.fine_shift(jnp.asarray(x), jnp.array(float(shift))))
    assert np.argmax(y) == 100 + shift
    assert y.max() == pytest.approx(1.0, abs=1e-4)


def test_fine_shift_fractional_moves_a_smooth_pulse():
  n, centre, width, shift = 4096, 1000.0, 12.0, 2.5
  t = np.arange(n)
  pulse = np.exp(-0.5 * ((t - centre) / width) ** 2).astype(np.float32)
  y = np.asarray(signal.fine_shift(jnp.asarray(pulse), jnp.array(shift)))
  want = np.exp(-0.5 * ((t - centre - shift) / width) ** 2)
  np.testing.assert_allclose(y, want, atol=1e-4)
  shifted_back = np.asarray(signal.fine_shift(jnp.asarray(pulse), jnp.array(-shift)))
  np.testing.assert_allclose(shifted_back, np.exp(-0.5 * ((t - centre + shift) / width) ** 2),
                             atol=1e-4)


def torch_like_linear_upsample(x, out_len):
  """interpolate(mode='linear', align_corners=False): half-pixel centres, clamped."""
  pos = np.clip((np.arange(out_len) + 0.5) * len(x) / out_len - 0.5, 0, len(x) - 1)
  return np.interp(pos, np.arange(len(x)), x)


def test_upsample_linear_matches_half_pixel_interpolation():
  rng = np.random.default_rng(4)
  x = rng.standard_normal((2, 32))
  got = np.asarray(signal.upsample_linear(jnp.asarray(x, jnp.float32), 32 * 16))
  for row in range(2):
    np.testing.assert_allclose(got[row], torch_like_linear_upsample(x[row], 512), atol=1e-5)


def test_second_half_ramp():
  w = signal.second_half_ramp(16, 8.0)
  np.testing.assert_array_equal(w[:8], 1.0)
  np.testing.assert_allclose(w[8:], np.linspace(1, 0, 8) ** 8, rtol=1e-6)
