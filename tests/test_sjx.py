"""Tests for the EventSet container and the .sjx file format (pure numpy, no JAX)."""
import os
import struct
import zlib

import numpy as np
import pytest

from sparse_jax.codec import events as events_lib
from sparse_jax.codec import sjx
from sparse_jax.errors import UserError

MODEL_A = bytes.fromhex("ab12" * 8)
MODEL_B = bytes.fromhex("cd34" * 8)


def make_events(rng, n_events=6, dim=32, n_audio_samples=22050 * 3, sample_rate=22050, hop=256,
                vector_scale=3.0):
  n_frames = n_audio_samples // hop
  return events_lib.EventSet(
      frames=rng.integers(0, n_frames, n_events),
      offsets=rng.uniform(-hop, hop, n_events),
      gains=rng.uniform(0, 3, n_events),
      vectors=rng.normal(size=(n_events, dim)) * vector_scale,
      sample_rate=sample_rate, hop=hop, window_samples=2**17, n_audio_samples=n_audio_samples,
      model_id=MODEL_A, events_per_window=32)


def recrc(data):
  """Replaces the trailer with the CRC of the (modified) rest, to test checks behind the CRC."""
  body = bytes(data[:-4])
  return body + struct.pack("<I", zlib.crc32(body))


# ----------------------------------------------------------------------------------------------
# EventSet.


def test_eventset_properties_and_sorting():
  ev = events_lib.EventSet(
      frames=[5, 2, 5, 2], offsets=[10.0, -3.0, -10.0, -3.0], gains=[1, 2, 3, 4],
      vectors=np.arange(8).reshape(4, 2), sample_rate=1000, hop=100, n_audio_samples=1000,
      model_id=MODEL_A)
  assert len(ev) == 4 and ev.event_dim == 2
  np.testing.assert_allclose(ev.times_seconds, [0.51, 0.197, 0.49, 0.197])
  assert ev.duration_seconds == 1.0
  s = ev.sorted()
  # Frame then offset; the two identical (2, -3) events keep their order (stable).
  np.testing.assert_array_equal(s.frames, [2, 2, 5, 5])
  np.testing.assert_array_equal(s.gains, [2, 4, 3, 1])
  sub = ev.select(np.array([False, True, False, True]))
  np.testing.assert_array_equal(sub.gains, [2, 4])
  np.testing.assert_array_equal(ev.select([3, 0]).vectors, [[6, 7], [0, 1]])
  assert ev.select([]).event_dim == 2 and len(ev.select([])) == 0
  assert ev.frames.dtype == np.int64 and ev.vectors.dtype == np.float32


@pytest.mark.parametrize("change, message", [
    (dict(gains=[1.0, -1.0]), "gains"),
    (dict(gains=[1.0, np.nan]), "gains"),
    (dict(gains=[1.0]), "shape"),
    (dict(offsets=[0.0, 300.0]), "offsets"),
    (dict(frames=[0, 11]), "frames"),
    (dict(frames=[-1, 0]), "frames"),
    (dict(frames=[0.5, 1]), "whole"),
    (dict(vectors=np.array([[1.0], [np.inf]])), "NaN or infinite"),
    (dict(vectors=np.zeros(2)), "shape"),
    (dict(sample_rate=0), "sample_rate"),
    (dict(hop=2**16), "hop"),
    (dict(model_id=b"short"), "model_id"),
])
def test_eventset_validation(change, message):
  fields = dict(frames=[0, 10], offsets=[0.0, 1.0], gains=[1.0, 2.0], vectors=np.ones((2, 1)),
                sample_rate=100, hop=256, n_audio_samples=2600, model_id=MODEL_A)
  events_lib.EventSet(**fields)  # The unchanged fields are valid.
  fields.update(change)
  with pytest.raises(ValueError, match=message):
    events_lib.EventSet(**fields)


# ----------------------------------------------------------------------------------------------
# Round trips.


def test_header_fields_byte_exact():
  ev = events_lib.EventSet(
      frames=[3, 1, 200], offsets=[0.0, 12.0, -5.0], gains=[1.0, 0.5, 2.0],
      vectors=np.ones((3, 7)), sample_rate=44100, hop=512, window_samples=2**17,
      n_audio_samples=2**17 + 5, model_id=MODEL_B, events_per_window=17, level=1.5)
  data = sjx.encode_bytes(ev, bits=16)
  # Deltas 1, 2, 197: one, one and two varint bytes.
  v1_fields = (struct.pack("<I", 44100) +
               struct.pack("<H", 512) + struct.pack("<I", 2**17) +
               struct.pack("<Q", 2**17 + 5) + struct.pack("<H", 7) + struct.pack("<H", 17) +
               struct.pack("<I", 3) + bytes([16]) + MODEL_B + struct.pack("<I", 4))
  expected_header = b"SJX\x00" + struct.pack("<H", 2) + v1_fields + struct.pack("<e", 1.5)
  assert data[:sjx.HEADER_BYTES] == expected_header
  assert data[sjx.HEADER_BYTES:sjx.HEADER_BYTES + 4] == bytes([1, 2, 197 & 0x7F | 0x80, 1])
  assert len(data) == 55 + 4 + 3 * (5 + 7 * 2) + 4
  assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
  back = sjx.decode_bytes(data)
  for name in ("sample_rate", "hop", "window_samples", "n_audio_samples", "model_id",
               "events_per_window", "event_dim", "level"):
    assert getattr(back, name) == getattr(ev, name), name
  # Version 1 (what readers before the level read): the same file without the last two bytes of
  # the header, and it still reads, with no level.
  old = sjx.encode_bytes(ev, bits=16, version=1)
  assert old[:53] == b"SJX\x00" + struct.pack("<H", 1) + v1_fields
  assert old[53:-4] == data[55:-4] and len(old) == len(data) - 2
  back = sjx.decode_bytes(old)
  assert back.level == 0 and back.replace(level=1.5).same_as(sjx.decode_bytes(data))


@pytest.mark.parametrize("bits", [8, 16])
def test_values_within_quantisation_bound(bits):
  rng = np.random.default_rng(bits)
  ev = make_events(rng, n_events=200, vector_scale=4.0)
  # Gains over the range the model may produce, up to ~1e3, and exact zeros.
  ev = ev.replace(gains=np.concatenate([[0.0, 1e3, 999.7, 1e-6], rng.uniform(0, 50, 196)]),
                  vectors=np.concatenate([np.zeros((1, 32)), ev.vectors[1:]]))
  back = sjx.decode_bytes(sjx.encode_bytes(ev, bits))
  ref = ev.sorted()
  bound = sjx.quantisation_error_bound(ref, bits)
  np.testing.assert_array_equal(back.frames, ref.frames)
  vec_err = np.abs(back.vectors.astype(np.float64) - ref.vectors)
  assert np.all(vec_err <= bound["vector"][:, None])
  # The bound is not vacuous: the worst value comes within 10 % of it.
  assert vec_err.max() > 0.9 * bound["vector"].max()
  off_err = np.abs(back.offsets.astype(np.float64) - ref.offsets)
  assert np.all(off_err <= bound["offset"]) and bound["offset"] < 1.01 * ref.hop / 254
  gain_err = np.abs(back.gains.astype(np.float64) - ref.gains)
  assert np.all(gain_err <= bound["gain"])
  assert np.all(gain_err <= np.maximum(ref.gains * 2.0**-11, 1e-7))
  assert np.all(back.vectors[np.all(ref.vectors == 0, axis=1)] == 0)
  # Relative to the per-event peak, the vector error is about 1/(2 * Q).
  rel = vec_err.max(axis=1) / np.abs(ref.vectors).max(axis=1).clip(1e-30)
  q = 2**(bits - 1) - 1
  assert rel.max() <= 0.5 / q * 1.01


def test_16_bit_error_far_smaller_than_8_bit():
  rng = np.random.default_rng(7)
  ev = make_events(rng, n_events=100)
  errs = {}
  for bits in (8, 16):
    back = sjx.decode_bytes(sjx.encode_bytes(ev, bits))
    errs[bits] = np.abs(back.vectors - ev.sorted().vectors).max()
  assert errs[16] < errs[8] / 100, errs


def test_extreme_vectors_within_bound():
  """Tiny, huge (past the float16 scale range) and mixed-magnitude vectors."""
  vectors = np.stack([np.full(4, 1e-12), np.array([1e9, -1e9, 1.0, 0.0]),
                      np.array([65000.0, -3.0, 2.0, 1e-3]), np.zeros(4)])
  ev = events_lib.EventSet(frames=[0, 1, 2, 3], offsets=np.zeros(4), gains=[1e5, 1, 1, 1],
                           vectors=vectors, sample_rate=8000, n_audio_samples=8000,
                           model_id=MODEL_A)
  for bits in (8, 16):
    back = sjx.decode_bytes(sjx.encode_bytes(ev, bits))
    bound = sjx.quantisation_error_bound(ev, bits)
    assert np.all(np.abs(back.vectors.astype(np.float64) - vectors) <= bound["vector"][:, None])
    assert np.all(np.abs(back.gains.astype(np.float64) - ev.gains) <= bound["gain"])
    assert np.all(np.isfinite(back.vectors))
    assert back.gains[0] == np.float16(65504)  # Clamped, not infinite.


def test_eight_bit_reencode_is_byte_identical():
  """8-bit dequantised values are exactly representable, so decode -> encode is a fixed point."""
  rng = np.random.default_rng(3)
  data = sjx.encode_bytes(make_events(rng, n_events=50), 8)
  assert sjx.encode_bytes(sjx.decode_bytes(data), 8) == data


def _varint_bytes(deltas):
  return sum(max(1, -(-int(d).bit_length() // 7)) for d in deltas)


def test_frames_exact_with_large_gaps_and_ties():
  frames = np.array([0, 0, 127, 128, 16511, 16512, 10**6, 10**6 + 1, 3 * 10**6, 3 * 10**6])
  n = len(frames)
  ev = events_lib.EventSet(frames=frames, offsets=np.linspace(-200, 200, n), gains=np.ones(n),
                           vectors=np.ones((n, 2)), sample_rate=22050,
                           n_audio_samples=(3 * 10**6 + 1) * 256, model_id=MODEL_A)
  data = sjx.encode_bytes(ev)
  back = sjx.decode_bytes(data)
  np.testing.assert_array_equal(back.select(back.gains > 0).frames, frames)
  # The silence between them is filled with silent events, one every two windows (1024 frames).
  filler = back.select(back.gains == 0)
  assert np.all(filler.vectors == 0) and np.all(filler.offsets == 0)
  assert np.diff(np.concatenate([[0], back.frames])).max() <= 2 * 2**17 // 256
  assert len(filler) == pytest.approx(3 * 10**6 / 1024, abs=20)
  # Every delta is a LEB128 varint: 0, 127 take one byte, 16383 two, 983488 three.
  (frame_bytes,) = struct.unpack_from("<I", data, 49)
  assert frame_bytes == _varint_bytes(np.diff(back.frames, prepend=0))
  assert _varint_bytes([0, 127, 128, 16383, 16384, 983488]) == 1 + 1 + 2 + 2 + 3 + 3


def test_empty_event_set_round_trips():
  ev = events_lib.EventSet(frames=[], offsets=[], gains=[], vectors=np.zeros((0, 32)),
                           sample_rate=22050, n_audio_samples=1000, model_id=MODEL_A)
  data = sjx.encode_bytes(ev)
  assert len(data) == sjx.HEADER_BYTES + 4
  back = sjx.decode_bytes(data)
  assert len(back) == 0 and back.event_dim == 32 and back.model_id == MODEL_A


def test_write_read_file(tmp_path):
  rng = np.random.default_rng(0)
  ev = make_events(rng)
  path = tmp_path / "song.sjx"
  sjx.write(path, ev, bits=16)
  back = sjx.read(path, expected_model_id=MODEL_A)
  np.testing.assert_array_equal(back.frames, ev.sorted().frames)
  assert sjx.read(str(path), expected_model_id=MODEL_A.hex()).same_as(back)
  assert os.listdir(tmp_path) == ["song.sjx"]


# ----------------------------------------------------------------------------------------------
# Bitrate.


def test_bitrate_of_default_file_is_at_most_3_5_kbps(tmp_path, capsys):
  rng = np.random.default_rng(0)
  sample_rate, seconds = 22050, 60
  n_audio = sample_rate * seconds
  n_events = round(32 * n_audio / 2**16)
  ev = make_events(rng, n_events=n_events, n_audio_samples=n_audio, sample_rate=sample_rate)
  kbps8 = sjx.bitrate_kbps(ev, bits=8)
  kbps16 = sjx.bitrate_kbps(ev, bits=16)
  with capsys.disabled():
    print(f"\n.sjx bitrate, {n_events} events in {seconds} s at {sample_rate} Hz: "
          f"8-bit {kbps8:.3f} kbit/s, 16-bit {kbps16:.3f} kbit/s")
  assert kbps8 <= 3.5
  assert kbps16 < 6.5
  # The three ways of asking agree.
  path = tmp_path / "a.sjx"
  sjx.write(path, ev, bits=8)
  assert sjx.bitrate_kbps(path) == pytest.approx(kbps8)
  assert sjx.bitrate_kbps(os.path.getsize(path), duration_seconds=seconds) == pytest.approx(kbps8)
  # Independent size count: header + varints + 5 bytes + D bytes per event + CRC.
  deltas = np.diff(np.sort(ev.frames), prepend=0)
  varint_bytes = sum(max(1, -(-int(d).bit_length() // 7)) for d in deltas)
  size = 55 + varint_bytes + n_events * (5 + 32) + 4
  assert kbps8 == pytest.approx(8 * size / seconds / 1000)


# ----------------------------------------------------------------------------------------------
# Refusing bad files.


def small_file():
  rng = np.random.default_rng(1)
  return sjx.encode_bytes(make_events(rng, n_events=3, dim=4), bits=8)


def test_every_truncation_is_refused():
  data = small_file()
  for n in range(len(data)):
    with pytest.raises(UserError):
      sjx.decode_bytes(data[:n], name="x.sjx")
  with pytest.raises(UserError, match="truncated"):
    sjx.decode_bytes(data[:-1])
  sjx.decode_bytes(data)  # The whole file is fine.


def test_every_single_byte_change_is_detected():
  data = small_file()
  for pos in range(len(data)):
    for mask in (0x01, 0x80, 0xFF):
      bad = bytearray(data)
      bad[pos] ^= mask
      with pytest.raises(UserError):
        sjx.decode_bytes(bytes(bad), name="x.sjx")


def test_corrupt_body_reports_crc_mismatch():
  data = bytearray(small_file())
  data[-10] ^= 0x10
  with pytest.raises(UserError, match=r"^x\.sjx: corrupt \(CRC mismatch\)"):
    sjx.decode_bytes(bytes(data), name="x.sjx")


def test_trailing_garbage():
  with pytest.raises(UserError, match="x.sjx: 2 bytes of trailing data"):
    sjx.decode_bytes(small_file() + b"\x00\x00", name="x.sjx")


def test_bad_magic_and_version():
  data = small_file()
  with pytest.raises(UserError, match="not an SJX file"):
    sjx.decode_bytes(b"RIFF" + data[4:], name="x.sjx")
  with pytest.raises(UserError, match="empty"):
    sjx.decode_bytes(b"", name="x.sjx")
  with pytest.raises(UserError, match="unsupported SJX format version 3"):
    sjx.decode_bytes(recrc(data[:4] + struct.pack("<H", 3) + data[6:]), name="x.sjx")


@pytest.mark.parametrize("offset, fmt, value, message", [
    (6, "<I", 0, "sample_rate is 0"),
    (10, "<H", 0, "hop is 0"),
    (24, "<H", 0, "event_dim is 0"),
    (32, "<B", 12, "12 bits per value"),
    (49, "<I", 1, "frame bytes"),
    (16, "<Q", 10, "beyond the end of the audio"),
])
def test_implausible_header_with_valid_crc(offset, fmt, value, message):
  data = bytearray(small_file())
  struct.pack_into(fmt, data, offset, value)
  with pytest.raises(UserError, match=message):
    sjx.decode_bytes(recrc(data), name="x.sjx")


def patched(data, *fields):
  """`data` with (offset, struct format, value) header fields replaced and the CRC made valid."""
  data = bytearray(data)
  for offset, fmt, value in fields:
    struct.pack_into(fmt, data, offset, value)
  return recrc(data)


# The bombs: a 4 KB file declaring 2^32 samples made `decode` run 87 s, allocate 17 GB and
# write an 8.6 GB wav; 2^40 made `info` use 5.4 GB; 2^63, 2^64 - 1 and hop = window = 1 gave numpy
# tracebacks.  Each is now one line from the reader, before anything is allocated.
@pytest.mark.parametrize("fields, message", [
    (((16, "<Q", 2**32),), "n_audio_samples 4294967296"),
    (((16, "<Q", 2**40),), "n_audio_samples"),
    (((16, "<Q", 2**63),), "n_audio_samples"),
    (((16, "<Q", 2**64 - 1),), "n_audio_samples"),
    (((10, "<H", 1), (12, "<I", 1)), "window_samples 1"),
    (((12, "<I", 2**17 + 3),), "power of two"),
    (((12, "<I", 2**30),), "window_samples"),
    (((10, "<H", 300),), "hop 300"),
    (((10, "<H", 2**16 - 1), (12, "<I", 2**16)), "hop 65535"),
    (((6, "<I", 1),), "sample_rate 1"),
    (((6, "<I", 2**32 - 1),), "sample_rate"),
])
def test_implausible_lengths_and_shapes_are_refused(fields, message):
  with pytest.raises(UserError, match=message) as info:
    sjx.decode_bytes(patched(small_file(), *fields), name="x.sjx")
  assert str(info.value).startswith("x.sjx: ") and "\n" not in str(info.value)


def test_length_is_bounded_by_the_last_event_plus_two_windows():
  data = small_file()
  ev = sjx.decode_bytes(data)
  limit = int(ev.frames[-1]) * ev.hop + 2 * ev.window_samples
  assert sjx.decode_bytes(patched(data, (16, "<Q", limit))).n_audio_samples == limit
  with pytest.raises(UserError, match=f"n_audio_samples {limit + 1} .*{limit}"):
    sjx.decode_bytes(patched(data, (16, "<Q", limit + 1)), name="x.sjx")


def test_file_without_events_may_declare_at_most_two_windows():
  ev = events_lib.EventSet(frames=[], offsets=[], gains=[], vectors=np.zeros((0, 4)),
                           sample_rate=22050, n_audio_samples=2 * 2**17, model_id=MODEL_A)
  data = sjx.encode_bytes(ev)
  assert len(sjx.decode_bytes(data)) == 0
  for n in (2 * 2**17 + 1, 2**32):
    with pytest.raises(UserError, match="n_audio_samples"):
      sjx.decode_bytes(patched(data, (16, "<Q", n)), name="x.sjx")


def test_silence_is_kept_by_silent_events_every_two_windows():
  """A file whose events end long before the audio (a silent tail, dropped events) stays readable:
  the writer fills the silence with gain-0 events, one every two windows, which render nothing."""
  rng = np.random.default_rng(2)
  n_audio = 22050 * 60
  ev = make_events(rng, n_events=5, n_audio_samples=n_audio)
  ev = ev.replace(frames=np.arange(5))  # all in the first 5 frames, then 59 s of silence
  back = sjx.decode_bytes(sjx.encode_bytes(ev))
  # Two windows are 1024 frames; the last filler is the first within two windows of the end
  # (frame 5168 is the end, 1024 frames before it is 4144).
  fill = np.array([1028, 2052, 3076, 4100, 5124])
  assert back.n_audio_samples == n_audio and len(back) == 5 + len(fill)
  np.testing.assert_array_equal(back.frames, np.concatenate([np.arange(5), fill]))
  assert np.all(back.gains[5:] == 0) and np.all(back.offsets[5:] == 0)
  assert np.all(back.vectors[5:] == 0)
  assert n_audio - back.frames[-1] * 256 <= 2 * 2**17
  # No events at all, a long file: silent events alone, as many as the length needs.
  empty = ev.select([])
  back = sjx.decode_bytes(sjx.encode_bytes(empty))
  np.testing.assert_array_equal(back.frames, [1024, 2048, 3072, 4096, 5120])
  assert np.all(back.gains == 0)
  assert back.n_audio_samples == n_audio
  # Events that reach the end with no long gap need no extra event.
  near_end = ev.replace(frames=[900, 1900, 2900, 3900, 4900])
  assert len(sjx.decode_bytes(sjx.encode_bytes(near_end))) == 5


@pytest.mark.parametrize("change, message", [
    (dict(window_samples=2**17 + 3), "power of two"),
    (dict(hop=300), "hop"),
    (dict(sample_rate=1), "sample_rate"),
    (dict(n_audio_samples=2**40, frames=[2**40 // 256] * 6), "n_audio_samples"),
])
def test_writer_refuses_what_the_reader_would(change, message):
  ev = make_events(np.random.default_rng(0)).replace(**change)
  with pytest.raises(ValueError, match=message):
    sjx.encode_bytes(ev)


def test_out_of_range_codes_with_valid_crc():
  data = bytearray(small_file())
  (frame_bytes,) = struct.unpack_from("<I", data, 49)
  data[sjx.HEADER_BYTES + frame_bytes] = 0x80  # Offset code -128.
  with pytest.raises(UserError, match="outside their range"):
    sjx.decode_bytes(recrc(data))
  data = bytearray(small_file())
  struct.pack_into("<e", data, sjx.HEADER_BYTES + frame_bytes + 3, np.nan)  # A NaN gain.
  with pytest.raises(UserError, match="corrupt: gains"):
    sjx.decode_bytes(recrc(data))


def test_model_id_mismatch():
  data = small_file()
  with pytest.raises(UserError) as info:
    sjx.decode_bytes(data, expected_model_id=MODEL_B, name="x.sjx")
  message = str(info.value)
  assert "\n" not in message
  assert "made by model ab12ab12ab12" in message and "this checkpoint is cd34cd34cd34" in message
  assert "decode with the checkpoint that encoded it" in message
  assert sjx.decode_bytes(data, expected_model_id=MODEL_A).model_id == MODEL_A


def test_missing_file_and_folder(tmp_path):
  with pytest.raises(UserError, match="nope.sjx: no such file"):
    sjx.read(tmp_path / "nope.sjx")
  with pytest.raises(UserError, match="is a folder"):
    sjx.read(tmp_path)


# ----------------------------------------------------------------------------------------------
# Atomic writes.


def test_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
  path = tmp_path / "out.sjx"
  path.write_bytes(b"old contents")
  ev = make_events(np.random.default_rng(0))

  def broken_replace(src, dst):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(os, "replace", broken_replace)
  with pytest.raises(UserError, match="out.sjx: cannot write: No space left"):
    sjx.write(path, ev)
  assert path.read_bytes() == b"old contents"
  assert os.listdir(tmp_path) == ["out.sjx"]


def test_write_invalid_bits_creates_nothing(tmp_path):
  ev = make_events(np.random.default_rng(0))
  with pytest.raises(ValueError, match="bits"):
    sjx.write(tmp_path / "out.sjx", ev, bits=12)
  assert os.listdir(tmp_path) == []


def test_write_into_missing_folder(tmp_path):
  ev = make_events(np.random.default_rng(0))
  with pytest.raises(UserError, match="does not exist"):
    sjx.write(tmp_path / "no" / "out.sjx", ev)
  assert os.listdir(tmp_path) == []


def test_written_file_honours_the_umask_like_audio_outputs(tmp_path):
  from sparse_jax import audio_io
  ev = make_events(np.random.default_rng(0))
  old = os.umask(0o022)
  try:
    sjx.write(tmp_path / "a.sjx", ev)
    audio_io.write_audio(tmp_path / "a.wav", np.zeros(100, np.float32), 22050)
    os.umask(0o027)
    sjx.write(tmp_path / "b.sjx", ev)
  finally:
    os.umask(old)
  mode = lambda name: os.stat(tmp_path / name).st_mode & 0o777
  assert mode("a.sjx") == mode("a.wav") == 0o644
  assert mode("b.sjx") == 0o640
