"""The Python API (sparse_jax/api.py): the README's 'Python API' example, step by step."""
import codec_fixtures
import numpy as np
import pytest

from sparse_jax import api, audio_io
from sparse_jax.errors import UserError


@pytest.fixture(scope="module")
def codec():
  return api.load_codec(codec_fixtures.tiny_workdir())


def stereo_44k(codec, seconds=1.5):
  from test_stream import own_events
  mono = own_events(codec, int(seconds * codec.sample_rate), every=7)
  mono = audio_io.resample(0.5 * mono / np.abs(mono).max(), codec.sample_rate, 44100)
  return np.stack([mono, 0.5 * mono], axis=1)


def test_load_encode_edit_decode_write_read(codec, tmp_path):
  assert api.load_codec(codec_fixtures.tiny_workdir()) is codec  # cached per workdir
  audio = stereo_44k(codec)
  events = api.encode(codec, audio, 44100)
  assert len(events) > 0 and events.source_sample_rate == 44100 and events.source_channels == 2
  assert events.n_audio_samples == int(np.ceil(audio.shape[0] * 22050 / 44100))
  # The command line's encoder is this one: the same events from the same samples.
  mono = audio_io.resample(audio.mean(1), 44100, codec.sample_rate)
  plain_events, info = codec.encode(mono, return_info=True)
  assert plain_events.replace(source_sample_rate=44100, source_channels=2).same_as(
      events.replace(level=0.0))
  # The level brings the decoded audio to the input's RMS (over both channels).
  rms_in = np.sqrt(np.mean(audio.astype(np.float64)**2))
  assert info.decoded_rms == pytest.approx(np.sqrt(np.mean(codec.decode(plain_events)**2.0)),
                                           rel=1e-5)
  assert events.level == pytest.approx(rms_in / info.decoded_rms, rel=2**-11)
  assert events.level == float(np.float16(events.level))  # what the file holds

  louder = api.edit.scale_gains(events, 2.0)
  fewer = api.edit.drop(louder, time_range=(0.0, 0.5))
  assert len(fewer) < len(louder) and np.all(fewer.times_seconds >= 0.5)
  out, rate = api.decode(codec, fewer)
  assert rate == 44100 and out.shape == audio.shape
  plain, rate = api.decode(codec, fewer, model_format=True)
  assert rate == codec.sample_rate and plain.shape == (events.n_audio_samples,)
  np.testing.assert_allclose(plain, codec.decode(fewer))
  np.testing.assert_allclose(out[:, 1], audio_io.to_format(plain * np.float32(events.level), 22050,
                                                           44100, 1), rtol=1e-6, atol=1e-7)

  api.write(tmp_path / "f.sjx", fewer, bits=16)
  back = api.read(tmp_path / "f.sjx")
  assert len(back) == len(fewer) and back.source_channels == 2


def test_kbps_and_bad_input(codec):
  audio = stereo_44k(codec)
  events = api.encode(codec, audio, 44100, kbps=2.0)
  from sparse_jax.codec import sjx
  assert sjx.bitrate_kbps(events) <= 2.0
  assert 1 <= events.events_per_window <= codec.default_events
  with pytest.raises(UserError, match="lowest rate"):
    api.encode(codec, audio, 44100, kbps=0.01)
  with pytest.raises(UserError, match="samples,"):
    api.encode(codec, np.zeros((2, 2, 2)), 44100)
  with pytest.raises(UserError, match="source format 50 Hz"):
    api.encode(codec, audio, 50)
