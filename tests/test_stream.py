"""Tests for the streaming codec (sparse_jax/codec/stream.py) on an untrained ':tiny' model.

The model is untrained, so events do not land on clicks; the tests check the mechanics instead:
window coverage, absolute frames, the residual write-back, decode placement, stopping rules,
lengths, and the quantisation round trip through `.sjx`.  ':tiny' windows are 2^14 samples
(256 frames of hop 64), sliding by 2^13 samples (128 frames).
"""
import numpy as np
import pytest

import codec_fixtures
from sparse_jax import metrics
from sparse_jax.codec import events as events_lib
from sparse_jax.codec import sjx, stream
from sparse_jax.errors import UserError


@pytest.fixture(scope="module")
def codec():
  return codec_fixtures.tiny_codec()


def click_train(n_samples, every=1500, seed=0):
  rng = np.random.default_rng(seed)
  audio = np.zeros(n_samples, np.float32)
  audio[::every] = rng.uniform(0.5, 1.0, len(audio[::every]))
  return audio


def snr_db(ref, est):
  ref, est = np.asarray(ref, np.float64), np.asarray(est, np.float64)
  return 10 * np.log10(np.sum(ref**2) / max(np.sum((ref - est)**2), 1e-300))


def event_spectra_sum(codec, vectors, frames, gains, fine):
  """Sum of |STFT| of events rendered at window-relative frames (numpy STFT), (F, N)."""
  total = np.zeros((codec.n_bins, codec.n_frames))
  if len(gains):
    for audio in codec.render(vectors, frames, gains, fine):
      total += metrics.stft_magnitude(audio, codec.window, codec.hop)
  return total


@pytest.fixture(scope="module")
def long_encoding(codec):
  """A click train over three windows plus a partial fourth, encoded with a hook on every window."""
  n = 3 * codec.n_samples + codec.n_samples // 3
  audio = click_train(n)
  seen = []
  hook = lambda w, start, spec, residual: seen.append((w, start, spec, residual))
  events, info = codec.encode(audio, return_info=True, window_hook=hook)
  return audio, events, info, seen


def test_windows_cover_every_input_frame(codec, long_encoding):
  audio, events, info, seen = long_encoding
  n_in = -(-audio.size // codec.hop)
  covered = np.zeros(n_in + codec.n_frames, bool)
  for _, start, _, _ in seen:
    covered[start:start + codec.half] = True
  assert covered[:n_in].all()
  starts = np.array([s for _, s, _, _ in seen])
  np.testing.assert_array_equal(starts, np.arange(len(seen)) * codec.half)
  np.testing.assert_array_equal(starts, info.window_starts_W)
  # No window beyond the one that holds the last input frame in its first half.
  assert starts[-1] <= n_in - 1 < starts[-1] + codec.half
  assert len(events) > 0
  assert events.frames.min() >= 0 and events.frames.max() < n_in
  # Every event sits in its own window's first half.
  np.testing.assert_array_equal(codec.window_of(events.frames), info.event_window_E)
  assert events.n_audio_samples == audio.size
  assert codec.decode(events).shape == audio.shape


def test_shared_spectrogram_and_residual_write_back(codec, long_encoding):
  audio, _, _, seen = long_encoding
  half = codec.half
  padded = np.concatenate([audio, np.zeros(len(seen) * half * codec.hop + codec.n_samples)])
  whole = metrics.stft_magnitude(padded, codec.window, codec.hop).astype(np.float32)
  np.testing.assert_allclose(seen[0][2], whole[:, :codec.n_frames], rtol=1e-6, atol=1e-6)
  for (_, _, _, prev_residual), (w, start, spec, _) in zip(seen, seen[1:]):
    # First half: exactly the previous window's final residual (second half), written back.
    np.testing.assert_array_equal(spec[:, :half], prev_residual[:, half:])
    # Second half: the untouched whole-file spectrogram.
    np.testing.assert_allclose(spec[:, half:], whole[:, start + half:start + codec.n_frames],
                               rtol=1e-6, atol=1e-6)
    # The write-back is not a no-op: events removed (or added) energy there.
    assert np.abs(spec[:, :half] - whole[:, start:start + half]).max() > 1e-5


def test_residual_is_input_minus_rendered_events(codec, long_encoding):
  """The decoder's batched renderer reproduces what the removal loop subtracted, per window."""
  _, events, info, seen = long_encoding
  for w in (0, 2):
    _, start, spec, residual = seen[w]
    sel = info.event_window_E == w
    removed = event_spectra_sum(codec, events.vectors[sel], events.frames[sel] - start,
                                events.gains[sel], events.offsets[sel])
    np.testing.assert_allclose(spec - residual, removed, atol=2e-4 * removed.max())
    assert removed.max() > 0.01


def test_fake_decomposition_bookkeeping(codec, monkeypatch):
  """With a stand-in removal loop, events get absolute frames and are filtered as documented."""
  d = codec.event_dim
  calls = []

  def fake_run_window(spec_FxN, n_steps, threshold):
    w = len(calls)
    calls.append(spec_FxN.copy())
    frames = np.array([3 + w, codec.half - 1, 7], np.int32)
    return dict(vectors=np.full((3, d), float(w), np.float32), frames=frames,
                gains=np.array([0.5, 1.0, 0.0], np.float32),  # the third is silent
                fine=np.array([1.5, -2.0, 0.0], np.float32),
                shares=np.ones(4), initial=np.float32(1.0),
                residual=np.full_like(spec_FxN, w + 1.0), kept=np.int32(3))

  monkeypatch.setattr(codec, "run_window", fake_run_window)
  n = 2 * codec.n_samples + 100  # windows at frames 0, 128, 256, 384, 512; the last one partial
  events, info = codec.encode(np.ones(n, np.float32), return_info=True)
  n_in = -(-n // codec.hop)
  assert len(calls) == 5 and n_in == 514
  expected_frames, expected_windows = [], []
  for w in range(5):
    for f in (3 + w, codec.half - 1):
      if w * codec.half + f < n_in:
        expected_frames.append(w * codec.half + f)
        expected_windows.append(w)
  np.testing.assert_array_equal(events.frames, expected_frames)
  np.testing.assert_array_equal(info.event_window_E, expected_windows)
  np.testing.assert_array_equal(events.vectors[:, 0], np.array(expected_windows, np.float32))
  np.testing.assert_allclose(events.offsets[:2], [1.5, -2.0])
  # The fake residual of window w is written back as window w+1's first half.
  for w in range(1, 5):
    np.testing.assert_array_equal(calls[w][:, :codec.half], w)


def test_event_decodes_at_its_absolute_frame(codec):
  rng = np.random.default_rng(3)
  vector = rng.normal(size=(1, codec.event_dim)).astype(np.float32)
  n = 3 * codec.n_samples
  make = lambda frame: events_lib.EventSet(
      frames=[frame], offsets=[0.0], gains=[1.0], vectors=vector, sample_rate=codec.sample_rate,
      hop=codec.hop, window_samples=codec.n_samples, n_audio_samples=n,
      model_id=codec.model_id, events_per_window=8)
  k = codec.half + 5  # window 1, relative frame 5
  y = codec.decode(make(k))
  y0 = codec.decode(make(5))  # the same event in window 0
  start = codec.half * codec.hop
  peak = np.abs(y).max()
  assert peak > 1e-3
  assert np.abs(y[:codec.hop * k]).max() < 1e-4 * peak  # nothing before its frame
  onset = int(np.flatnonzero(np.abs(y) > 1e-3 * peak)[0])
  assert codec.hop * k <= onset < codec.hop * (k + 4), onset  # the attack ramps up
  # Moving the event by 5 frames moves its audio by exactly 5 hops (the start is hop * frame).
  y_first = codec.decode(make(codec.half))
  shift = 5 * codec.hop
  np.testing.assert_allclose(y[start + shift:start + codec.n_samples],
                             y_first[start:start + codec.n_samples - shift], atol=1e-5 * peak)
  # Rendered exactly as in window 0, moved by the window start, cut at the window's end.
  np.testing.assert_array_equal(y[start:start + codec.n_samples], y0[:codec.n_samples])
  assert not np.any(y[start + codec.n_samples:])


def test_short_file_and_silence(codec):
  short = click_train(5000, every=700)
  events = codec.encode(short)
  assert events.n_audio_samples == 5000
  assert np.all(events.frames < -(-5000 // codec.hop))
  assert codec.decode(events).shape == (5000,)
  silent, info = codec.encode(np.zeros(20000, np.float32), return_info=True)
  # Window 0 is silent (share 0, not NaN); later windows see the tails its events subtracted.
  assert info.initial_l1_W[0] == 0 and np.all(info.shares_WxS1[0] == 0)
  assert np.all(np.isfinite(info.shares_WxS1))
  for name in ("vectors", "gains", "offsets"):
    assert np.all(np.isfinite(getattr(silent, name)))
  out = codec.decode(silent)
  assert out.shape == (20000,) and np.all(np.isfinite(out))
  # The threshold rule keeps nothing from a silent window (there is nothing to remove).
  assert len(codec.encode(np.zeros(3000, np.float32), residual_threshold=0.5)) == 0


def test_residual_threshold_stops_each_window(codec):
  # The input is one of the model's own events at gain 4, so the first steps remove energy.
  base = codec.encode(click_train(codec.n_samples))
  audio = codec.render(base.vectors[:1], base.frames[:1], np.array([4.0]), base.offsets[:1])[0]
  _, full = codec.encode(audio, return_info=True)
  shares0 = full.shares_WxS1[0]
  assert shares0[1] < 0.99, shares0  # the first event removes a visible share
  thr = float(np.float32((shares0[0] + shares0[1]) / 2))
  seen = []
  events, info = codec.encode(audio, residual_threshold=thr, return_info=True,
                              window_hook=lambda *a: seen.append(a))
  rule = lambda s: int(np.argmax(s < thr)) if np.any(s < thr) else len(s) - 1
  assert info.kept_W[0] == rule(shares0) == 1
  for w in range(len(info.kept_W)):
    assert info.kept_W[w] == rule(info.shares_WxS1[w].astype(np.float32))
  # The residual written back is the one after the kept steps (not after all steps).
  _, start, spec, residual = seen[0]
  sel = info.event_window_E == 0
  removed = event_spectra_sum(codec, events.vectors[sel], events.frames[sel] - start,
                              events.gains[sel], events.offsets[sel])
  np.testing.assert_allclose(spec - residual, removed, atol=2e-4 * removed.max())
  assert int(sel.sum()) == 1


def test_sjx_round_trip_within_quantisation_error(codec, long_encoding):
  """Decoding the quantised file vs the exact EventSet.

  The untrained encoder's vectors are all nearly equal and tiny (|v| < 1e-3), so there the error
  comes from the float16 gains and int8 offsets (~81 dB measured at either width); the same events
  with N(0, 1) vectors also exercise the vector quantiser (measured on these 24 events: 16-bit
  ~80 dB, 8-bit ~59 dB; on all 56 events of the clip 8-bit gave ~26 dB: the untrained decoder is
  very sensitive to some vectors).
  """
  _, events, _, _ = long_encoding
  events = events.select(events.frames < 3 * codec.half)  # one render batch per decode
  rng = np.random.default_rng(0)
  spread = events.replace(vectors=rng.normal(size=events.vectors.shape).astype(np.float32))
  snr = {}
  for name, ev in (("encoded", events), ("N(0,1) vectors", spread)):
    reference = codec.decode(ev)
    for bits in (16, 8):
      restored = sjx.decode_bytes(sjx.encode_bytes(ev, bits), expected_model_id=codec.model_id)
      snr[name, bits] = snr_db(reference, codec.decode(restored))
    print(f"round-trip SNR ({name}): 16-bit {snr[name, 16]:.1f} dB, "
          f"8-bit {snr[name, 8]:.1f} dB")
    assert snr[name, 16] > 30
    assert snr[name, 8] > 15
  assert snr["N(0,1) vectors", 16] > snr["N(0,1) vectors", 8] + 10


def test_decode_refuses_another_models_events(codec, long_encoding):
  _, events, _, _ = long_encoding
  foreign = events.replace(model_id=bytes(16))
  with pytest.raises(UserError, match="another|model"):
    codec.decode(foreign)
  np.testing.assert_array_equal(codec.decode(foreign, ignore_model_id=True),
                                codec.decode(events))
  with pytest.raises(UserError, match="do not fit"):
    codec.decode(events.replace(hop=codec.hop * 2, n_audio_samples=events.n_audio_samples * 2),
                 ignore_model_id=True)


def test_bad_audio_and_arguments(codec):
  with pytest.raises(UserError, match="empty"):
    codec.encode(np.zeros(0, np.float32))
  with pytest.raises(UserError, match="NaN"):
    codec.encode(np.array([0.0, np.nan, 0.0], np.float32))
  with pytest.raises(UserError, match="residual-threshold"):
    codec.encode(np.zeros(10, np.float32), residual_threshold=1.5)


def test_default_file_bitrate_at_full_size():
  """32 events per 2^16 samples at 22050 Hz, 32-d vectors, 8 bits: <= 3.5 kbit/s."""
  rng = np.random.default_rng(0)
  sr, hop, n_window = 22050, 256, 2**17
  half = n_window // hop // 2
  n_audio = 60 * sr
  n_windows = -(-(-(-n_audio // hop)) // half)
  frames = np.concatenate([w * half + rng.integers(0, half, 32) for w in range(n_windows)])
  frames = frames[frames < n_audio // hop]
  events = events_lib.EventSet(
      frames=frames, offsets=rng.uniform(-hop, hop, frames.size),
      gains=rng.uniform(0, 3, frames.size), vectors=rng.normal(size=(frames.size, 32)) * 3,
      sample_rate=sr, hop=hop, window_samples=n_window, n_audio_samples=n_audio,
      events_per_window=32)
  kbps8 = sjx.bitrate_kbps(events, bits=8)
  kbps16 = sjx.bitrate_kbps(events, bits=16)
  print(f"full-size bitrate: 8-bit {kbps8:.2f} kbit/s, 16-bit {kbps16:.2f} kbit/s")
  assert 3.0 < kbps8 <= 3.5
  assert kbps16 < 6.5


def test_progress_bar_is_plain_text():
  import io
  stream_ = io.StringIO()
  bar = stream.Progress(20, "encoding", stream=stream_)
  for i in range(1, 21):
    bar.update(i)
  bar.close()
  lines = stream_.getvalue().splitlines()
  assert 2 <= len(lines) <= 11 and lines[-1].startswith("encoding [#")
  assert "20/20 100%" in lines[-1]
