"""Tests for sparse_jax.audio_io: decoding, downmixing, resampling and atomic writes."""
import math
import os

import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from sparse_jax import audio_io
from sparse_jax.errors import UserError


def _sine(freq, sr, n, amp=1.0):
  return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def _dominant_hz(x, sr):
  spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
  return np.argmax(spec) * sr / len(x)


def test_load_stereo_float_wav_downmixes_and_resamples(tmp_path):
  sr_in, n = 44100, 44100
  left, right = _sine(440, sr_in, n, 0.5), _sine(440, sr_in, n, 0.3)
  path = tmp_path / 'stereo.wav'
  sf.write(path, np.stack([left, right], axis=1), sr_in, subtype='FLOAT')

  audio = audio_io.load_audio(path, 22050)

  assert audio.dtype == np.float32 and audio.ndim == 1
  assert audio.shape[0] == math.ceil(n * 22050 / sr_in)
  expected = _sine(440, 22050, audio.shape[0], 0.4)  # mean of the two channels
  interior = slice(200, -200)  # the polyphase filter's edge transients
  np.testing.assert_allclose(audio[interior], expected[interior], atol=2e-3)


def test_resample_rational_factor_matches_scipy():
  x = _sine(300, 48000, 4800)
  y = audio_io.resample(x, 48000, 22050)
  assert y.dtype == np.float32
  assert y.shape[0] == math.ceil(4800 * 147 / 320)
  np.testing.assert_allclose(y, scipy.signal.resample_poly(x, 147, 320), atol=1e-6)
  np.testing.assert_array_equal(audio_io.resample(x, 22050, 22050), x)


def test_flac_ogg_mp3_are_read(tmp_path):
  x = _sine(1000, 22050, 22050, 0.5)
  flac = tmp_path / 'a.flac'
  sf.write(flac, x, 22050, format='FLAC', subtype='PCM_16')
  np.testing.assert_allclose(audio_io.load_audio(flac, 22050), x, atol=1.0 / 32767)
  for ext, fmt in (('ogg', 'OGG'), ('mp3', 'MP3')):
    path = tmp_path / f'a.{ext}'
    sf.write(path, x, 22050, format=fmt)
    y = audio_io.load_audio(path, 22050)
    assert abs(_dominant_hz(y[:16384], 22050) - 1000) < 3, ext  # lossy, but the same tone
    assert 0.3 < np.abs(y).max() < 0.7, ext


def test_bad_inputs_raise_user_error(tmp_path):
  with pytest.raises(UserError, match='missing.wav: no such file'):
    audio_io.load_audio(tmp_path / 'missing.wav', 22050)
  with pytest.raises(UserError, match='folder'):
    audio_io.load_audio(tmp_path, 22050)
  garbage = tmp_path / 'garbage.wav'
  garbage.write_bytes(b'RIFF\x00\x01\x02this is not audio')
  with pytest.raises(UserError, match='garbage.wav: cannot read audio'):
    audio_io.load_audio(garbage, 22050)
  empty = tmp_path / 'empty.wav'
  sf.write(empty, np.zeros(0, np.float32), 22050)
  with pytest.raises(UserError, match='no audio samples'):
    audio_io.load_audio(empty, 22050)
  with pytest.raises(UserError, match='.mp4'):
    audio_io.write_audio(tmp_path / 'x.mp4', np.zeros(10), 22050)
  with pytest.raises(UserError, match='does not exist'):
    audio_io.write_audio(tmp_path / 'nope' / 'x.wav', np.zeros(10), 22050)


def test_error_messages_are_one_line(tmp_path):
  garbage = tmp_path / 'garbage.flac'
  garbage.write_bytes(b'\x00' * 100)
  with pytest.raises(UserError) as info:
    audio_io.load_audio(garbage, 22050)
  assert '\n' not in str(info.value)


def test_write_audio_formats_and_clipping(tmp_path):
  x = np.array([0.0, 0.5, 1.5, -2.0, -0.25], np.float32)
  audio_io.write_audio(tmp_path / 'a.wav', x, 22050)
  info = sf.info(tmp_path / 'a.wav')
  assert (info.format, info.subtype, info.samplerate) == ('WAV', 'PCM_16', 22050)
  y, _ = sf.read(tmp_path / 'a.wav', dtype='float32')
  np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1.0 / 32767)

  audio_io.write_audio(tmp_path / 'f.wav', x, 22050, subtype='FLOAT')  # float: not clipped
  np.testing.assert_array_equal(sf.read(tmp_path / 'f.wav', dtype='float32')[0], x)

  audio_io.write_audio(tmp_path / 'a.flac', x, 16000)
  assert sf.info(tmp_path / 'a.flac').format == 'FLAC'
  audio_io.write_audio(tmp_path / 'a.ogg', _sine(440, 22050, 4096, 0.5), 22050)
  assert sf.info(tmp_path / 'a.ogg').format == 'OGG'


def test_write_audio_is_atomic(tmp_path, monkeypatch):
  path = tmp_path / 'out.wav'
  old = _sine(440, 22050, 1000, 0.5)
  audio_io.write_audio(path, old, 22050)
  before = path.read_bytes()

  real_write = sf.write

  def write_half_then_fail(file, data, *args, **kwargs):
    real_write(file, data[: len(data) // 2], *args, **kwargs)
    raise OSError('disk full')

  monkeypatch.setattr(sf, 'write', write_half_then_fail)
  with pytest.raises(OSError, match='disk full'):
    audio_io.write_audio(path, np.zeros(5000, np.float32), 22050)
  assert path.read_bytes() == before  # the old file is intact...
  assert os.listdir(tmp_path) == ['out.wav']  # ...and no temporary file is left behind
