r"""The `.sjx` file: a compact, versioned, checksummed binary container for an `EventSet`.

The format (every field, bound and compatibility rule) is specified once, in `docs/format.md`;
this module implements it.  In short: a 55-byte header (version 2; version 1's 53 bytes still
read), a columnar body (LEB128 frame gaps, int8 offsets, float16 gains and scales, int8/int16
vectors) and a CRC32 trailer.  The reader refuses anything that is not exactly a valid file with
one UserError naming the file, before it allocates anything a header claims: a file's length is
bounded by its events (two windows each), so memory, time and output stay in proportion to what
the file holds.
"""
import math
import os
import struct
import zlib

import numpy as np

from sparse_jax import files
from sparse_jax.codec import events as events_lib
from sparse_jax.errors import UserError

MAGIC = b"SJX\x00"
VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
SUPPORTED_BITS = (8, 16)
# magic, version, sample_rate, hop, window_samples, n_audio_samples, event_dim, events_per_window,
# n_events, bits, model_id, frame_bytes; version 2 adds the level (float16).
_HEADERS = {1: struct.Struct("<4sHIHIQHHIB16sI"), 2: struct.Struct("<4sHIHIQHHIB16sIe")}
HEADER_BYTES = _HEADERS[VERSION].size
# Bit 15 of events_per_window: the events were refined at encode time (docs/format.md).
REFINED_FLAG = 0x8000
CRC_BYTES = 4
# Offsets are quantised to int8 over [-hop, hop].
OFFSET_LEVELS = 127
FLOAT16_MAX = float(np.finfo(np.float16).max)
# Frames are at most u64 n_audio_samples // 1; ten 7-bit groups hold 64 bits.
_MAX_VARINT_BYTES = 10
# Plausibility of the header (docs/format.md, the header table).  The limits are far beyond any model of this project
# (22050 Hz, hop 64..256, windows 2^14..2^17) but keep every count the reader derives from them
# (frames, windows, samples) small enough to allocate and inside int64.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 2**20
MIN_WINDOW_SAMPLES, MAX_WINDOW_SAMPLES = 2**8, 2**24
# 54 hours at 22050 Hz; decoding it already takes 17 GB of float32.
MAX_AUDIO_SAMPLES = 2**32 - 1
# How far past the last event's frame the audio may go, in windows (docs/format.md).
TAIL_WINDOWS = 2
# The source format (the u32 at offset 20): rate in bits 0-20, channels in bits 21-31.
SOURCE_RATE_BITS = 21
MAX_SOURCE_CHANNELS = 1024
# The formats decode restores: the most channels and the highest rate (docs/format.md).
RESTORED_MAX_CHANNELS = 64
RESTORED_MAX_RATE = 768_000

assert HEADER_BYTES == 55 and _HEADERS[1].size == 53, HEADER_BYTES


def _levels(bits):
  """Q, the largest quantised magnitude for `bits`-bit vector values."""
  return 2**(bits - 1) - 1


def _vector_dtype(bits):
  return np.dtype("<i1") if bits == 8 else np.dtype("<i2")


def _check_bits(bits):
  if bits not in SUPPORTED_BITS:
    raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits!r}")


def header_problem(sample_rate, hop, window_samples, n_audio_samples):
  """What makes these header values implausible (one phrase), or None; shared by writer and reader.

  Only integer comparisons: it runs before anything is allocated.
  """
  if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
    return (f"sample_rate {sample_rate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]")
  if (not MIN_WINDOW_SAMPLES <= window_samples <= MAX_WINDOW_SAMPLES
      or window_samples & (window_samples - 1)):
    return (f"window_samples {window_samples} is not a power of two in [{MIN_WINDOW_SAMPLES}, "
            f"{MAX_WINDOW_SAMPLES}]")
  # The streaming encoder needs a first half of at least one frame.
  if hop < 1 or window_samples % hop or window_samples // hop < 2:
    return f"hop {hop} does not divide window_samples {window_samples} into at least 2 frames"
  if n_audio_samples > MAX_AUDIO_SAMPLES:
    return f"n_audio_samples {n_audio_samples} is more than the format's {MAX_AUDIO_SAMPLES}"
  return None


def source_problem(source_sample_rate, source_channels):
  """What makes a source format unstorable (one phrase), or None; both 0 means unknown."""
  if source_sample_rate == 0 and source_channels == 0:
    return None
  if not (MIN_SAMPLE_RATE <= source_sample_rate <= MAX_SAMPLE_RATE
          and 1 <= source_channels <= MAX_SOURCE_CHANNELS):
    return (f"source format {source_sample_rate} Hz, {source_channels} channels is outside "
            f"[{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz and 1-{MAX_SOURCE_CHANNELS} channels")
  return None


def _pack_length(events):
  """The u64 at offset 16: n_audio_samples, with the source format in its upper half."""
  word = events.source_sample_rate | (events.source_channels << SOURCE_RATE_BITS)
  return events.n_audio_samples | (word << 32)


def _unpack_length(raw):
  """(n_audio_samples, source rate, source channels) of the u64 at offset 16.

  An upper half that is no plausible source format leaves the u64 whole, so the length check
  refuses it as it always did (a 2^32-sample bomb stays a bomb).
  """
  word = raw >> 32
  rate, channels = word & ((1 << SOURCE_RATE_BITS) - 1), word >> SOURCE_RATE_BITS
  if word == 0 or source_problem(rate, channels):
    return raw, 0, 0
  return raw & MAX_AUDIO_SAMPLES, rate, channels


def restorable(source_sample_rate, source_channels):
  """Whether decode writes this source format back (known, and within the restored range)."""
  return (0 < source_sample_rate <= RESTORED_MAX_RATE
          and 0 < source_channels <= RESTORED_MAX_CHANNELS)


# ----------------------------------------------------------------------------------------------
# Quantisers.  Each is a pair (quantise, dequantise) shared by the writer and the error bounds.


def vector_scales(vectors_ExD, bits):
  """float16 (E,): per-event scales s with max|v| / s <= Q, so no value is clipped.

  The scale is stored as float16; rounding max|v| / Q to float16 may round it down, which would
  push the largest value past Q, so the scale is bumped up one float16 step where that happens.
  """
  q = _levels(bits)
  peak_E = np.abs(vectors_ExD).max(axis=1) if vectors_ExD.size else np.zeros(len(vectors_ExD))
  wanted_E = peak_E.astype(np.float64) / q
  scales_E = np.minimum(wanted_E, FLOAT16_MAX).astype(np.float16)
  low = (scales_E.astype(np.float64) < wanted_E) & (scales_E < FLOAT16_MAX)
  scales_E[low] = np.nextafter(scales_E[low], np.float16(np.inf))
  return scales_E


def quantise_vectors(vectors_ExD, scales_E, bits):
  """Symmetric uniform quantisation of each event vector with its own scale."""
  q = _levels(bits)
  s = scales_E.astype(np.float64)[:, None]
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = np.where(s > 0, vectors_ExD.astype(np.float64) / s, 0.0)
  return np.clip(np.rint(ratio), -q, q).astype(_vector_dtype(bits))


def dequantise_vectors(codes_ExD, scales_E):
  return (codes_ExD.astype(np.float64) * scales_E.astype(np.float64)[:, None]).astype(np.float32)


def quantise_offsets(offsets_E, hop):
  return np.clip(np.rint(offsets_E.astype(np.float64) / hop * OFFSET_LEVELS),
                 -OFFSET_LEVELS, OFFSET_LEVELS).astype(np.int8)


def dequantise_offsets(codes_E, hop):
  return (codes_E.astype(np.float64) * hop / OFFSET_LEVELS).astype(np.float32)


def quantise_gains(gains_E):
  return np.minimum(gains_E.astype(np.float64), FLOAT16_MAX).astype(np.float16)


def file_level(level) -> float:
  """The level a file stores (float16) for `level`, as a float."""
  return float(np.float16(min(float(level), FLOAT16_MAX)))


def quantisation_error_bound(events, bits=8):
  """The largest absolute error the `.sjx` round trip may put on each stored value.

  Args:
    events: the EventSet that is about to be written.
    bits: bits per vector value, 8 or 16.

  Returns:
    A dict with
      "vector": float64 (E,), bound on |v - v'| for every value of each event's vector: half the
        event's stored scale (plus float32 rounding of the decoded value, plus the clipping of
        values beyond Q * 65504, which only vectors with max|v| > 8.3e6 at 8 bits suffer);
      "offset": float, bound on |offset - offset'| in samples: hop / 254;
      "gain": float64 (E,), bound on |gain - gain'|: float16 rounding (relative 2^-11, at least
        2^-25 near zero) plus the clamp at 65504 for larger gains.
  """
  _check_bits(bits)
  scales_E = vector_scales(events.vectors, bits).astype(np.float64)
  top_E = scales_E * _levels(bits)
  peak_E = (np.abs(events.vectors).max(axis=1).astype(np.float64) if events.vectors.size
            else np.zeros(len(events)))
  f32_eps = float(np.finfo(np.float32).eps)
  # Values beyond Q * s (only when max|v| > 65504 * Q, past the float16 scale range) are clipped.
  vector_E = scales_E / 2 + top_E * f32_eps + np.maximum(peak_E - top_E, 0.0)
  g = events.gains.astype(np.float64)
  gain_E = np.maximum(g * 2.0**-11, 2.0**-25) + np.maximum(g - FLOAT16_MAX, 0.0)
  offset = events.hop / (2 * OFFSET_LEVELS) * (1 + f32_eps) + events.hop * f32_eps
  return {"vector": vector_E, "offset": offset, "gain": gain_E}


def snap_to_file(vectors_KxD, offsets_K, hop: int, bits: int | None):
  """The vectors and offsets a `.sjx` file of `bits` stores for these (None: unchanged).

  The writer's own quantisers, so the encoder checks the audio the file decodes to.
  Re-quantising a snapped vector can move its per-event scale once (the scale is the float16 just
  above max|v| / Q), so it is applied until nothing changes, which makes the file's round trip
  of the result exact.
  """
  vectors_KxD = np.asarray(vectors_KxD, np.float32)
  offsets_K = np.asarray(offsets_K, np.float32)
  if bits is None or not vectors_KxD.size:
    return vectors_KxD, offsets_K
  for _ in range(4):
    scales_K = vector_scales(vectors_KxD, bits)
    snapped = dequantise_vectors(quantise_vectors(vectors_KxD, scales_K, bits), scales_K)
    if np.array_equal(snapped, vectors_KxD):
      break
    vectors_KxD = snapped
  offsets_K = dequantise_offsets(quantise_offsets(offsets_K, hop), hop)
  return vectors_KxD, offsets_K


def file_gains(gains_K) -> np.ndarray:
  """The gains a `.sjx` file stores (float16), as float64."""
  return quantise_gains(np.asarray(gains_K)).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Varints.


def _encode_varints(values_E):
  """Unsigned LEB128 of non-negative integers, concatenated."""
  out = bytearray()
  for value in values_E.tolist():
    while True:
      byte = value & 0x7F
      value >>= 7
      if value:
        out.append(byte | 0x80)
      else:
        out.append(byte)
        break
  return bytes(out)


def _decode_varints(data, count):
  """Decodes exactly `count` LEB128 values that fill `data`; returns (uint64 array, problem)."""
  raw = np.frombuffer(data, dtype=np.uint8)
  is_last = (raw & 0x80) == 0
  if int(is_last.sum()) != count or (count and not is_last[-1]) or (not count and len(raw)):
    return None, f"frame column does not hold {count} complete values"
  if count == 0:
    return np.zeros(0, np.uint64), None
  ends = np.flatnonzero(is_last)
  starts = np.concatenate([[0], ends[:-1] + 1])
  lengths = ends - starts + 1
  if np.any(lengths > _MAX_VARINT_BYTES):
    return None, "frame value longer than 64 bits"
  group = np.repeat(np.arange(count), lengths)
  position = np.arange(len(raw)) - np.repeat(starts, lengths)
  # The 10th byte of a 64-bit value may only carry the single top bit.
  if np.any((position == 9) & (raw > 1)):
    return None, "frame value longer than 64 bits"
  parts = (raw & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
  values = np.zeros(count, np.uint64)
  np.add.at(values, group, parts)  # Disjoint bit ranges: the sum is the bitwise or.
  return values, None


# ----------------------------------------------------------------------------------------------
# Encoding.


def encoded_size_bytes(n_events, frame_bytes, event_dim, bits, version=VERSION):
  """Total file size for the given counts (docs/format.md, the layout tables)."""
  per_event = 1 + 2 + 2 + event_dim * bits // 8
  return _HEADERS[version].size + frame_bytes + n_events * per_event + CRC_BYTES


def _fill_silence(ev):
  """`ev` (sorted) plus silent events wherever a gap is longer than the format allows.

  The reader bounds the length by the events (docs/format.md); silence is legitimate,
  so the writer vouches for it with events that render nothing (gain 0, like the decoder's own
  batch padding), one every TAIL_WINDOWS windows of each gap longer than that: before the first
  event, between two events and after the last.
  """
  span = TAIL_WINDOWS * ev.window_samples
  gap = span // ev.hop  # frames
  anchors, prev = [], 0
  for frame in ev.frames.tolist():
    while frame - prev > gap:
      prev += gap
      anchors.append(prev)
    prev = frame
  while ev.n_audio_samples - prev * ev.hop > span:  # the tail, up to the last frame
    prev = min(prev + gap, ev.max_frame)
    anchors.append(prev)
  if not anchors:
    return ev
  n = len(anchors)
  return ev.replace(
      frames=np.concatenate([ev.frames, np.asarray(anchors, np.int64)]),
      offsets=np.concatenate([ev.offsets, np.zeros(n, np.float32)]),
      gains=np.concatenate([ev.gains, np.zeros(n, np.float32)]),
      vectors=np.concatenate([ev.vectors, np.zeros((n, ev.event_dim), np.float32)])).sorted()


def encode_bytes(events, bits=8, version=VERSION):
  """Serialises an EventSet to `.sjx` bytes (events stored sorted by frame, then offset).

  Gaps of more than two windows without events (silence) get silent events (docs/format.md), so
  every file written can be read.

  Args:
    events: the EventSet to store.
    bits: bits per vector value, 8 (default, smallest) or 16.
    version: 2 (default), or 1 for a reader that predates the level (it is left out).

  Returns:
    The file contents.

  Raises:
    ValueError: `bits` is not 8 or 16, or the header would be implausible (see `header_problem`).
  """
  _check_bits(bits)
  if version not in SUPPORTED_VERSIONS:
    raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
  problem = (header_problem(events.sample_rate, events.hop, events.window_samples,
                            events.n_audio_samples)
             or source_problem(events.source_sample_rate, events.source_channels))
  if problem:
    raise ValueError(f"cannot write a .sjx file: {problem}")
  ev = _fill_silence(events.sorted())
  deltas = np.diff(ev.frames, prepend=np.int64(0)) if len(ev) else np.zeros(0, np.int64)
  frame_column = _encode_varints(deltas)
  scales_E = vector_scales(ev.vectors, bits)
  fields = [MAGIC, version, ev.sample_rate, ev.hop, ev.window_samples, _pack_length(ev),
            ev.event_dim, ev.events_per_window | (REFINED_FLAG if ev.refined else 0), len(ev), bits,
            ev.model_id, len(frame_column)]
  header = _HEADERS[version].pack(*fields + ([file_level(ev.level)] if version >= 2 else []))
  body = b"".join([
      frame_column,
      quantise_offsets(ev.offsets, ev.hop).tobytes(),
      quantise_gains(ev.gains).astype("<f2").tobytes(),
      scales_E.astype("<f2").tobytes(),
      quantise_vectors(ev.vectors, scales_E, bits).tobytes(),
  ])
  data = header + body
  out = data + struct.pack("<I", zlib.crc32(data))
  assert len(out) == encoded_size_bytes(len(ev), len(frame_column), ev.event_dim, bits, version)
  return out


def write(path, events, bits=8):
  """Writes `events` to `path` atomically: the file is either complete or not there (or unchanged).

  Args:
    path: destination file (conventionally `*.sjx`).
    events: the EventSet to store.
    bits: bits per vector value, 8 or 16.

  Raises:
    UserError: the folder does not exist or is not writable.
  """
  data = encode_bytes(events, bits)  # Fails before anything touches the disk.
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"{path}: cannot write: folder {folder} does not exist; create it first")
  try:
    files.write_bytes(path, data, fsync=True)
  except OSError as e:
    raise UserError(
        f"{path}: cannot write: {e.strerror or e}; check the path and permissions") from e


# ----------------------------------------------------------------------------------------------
# Decoding.


def _normalise_model_id(model_id):
  if model_id is None:
    return None
  if isinstance(model_id, str):
    try:
      model_id = bytes.fromhex(model_id)
    except ValueError:
      raise ValueError(f"expected_model_id {model_id!r} is not hex") from None
  if len(model_id) != events_lib.MODEL_ID_BYTES:
    raise ValueError(f"expected_model_id must be {events_lib.MODEL_ID_BYTES} bytes")
  return bytes(model_id)


def decode_bytes(data, expected_model_id=None, name="<bytes>", max_seconds=None):
  """Parses `.sjx` bytes into an EventSet, refusing anything not exactly a valid file.

  Args:
    data: the file contents.
    expected_model_id: 16 bytes (or 32 hex characters) of the checkpoint about to decode the
      events; None skips the check.
    name: what to call the data in error messages (the file name).
    max_seconds: accept a declared length of up to this many seconds even where the events span
      less (the second length rule of docs/format.md: older files of mostly silence);
      None: only what the events span.

  Returns:
    The EventSet, events sorted by frame then offset.

  Raises:
    UserError: the data is not a valid `.sjx` file of a supported version, is truncated, has
      trailing data, is corrupt, or was made by a different model.
  """
  expected_model_id = _normalise_model_id(expected_model_id)
  data = bytes(data)

  def fail(problem, fix):
    raise UserError(f"{name}: {problem}; {fix}")

  reencode = "encode the audio again"
  if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
    fail("not an SJX file (bad magic bytes)" if data else "not an SJX file (empty)",
         "pass a .sjx file written by `encode`")
  if len(data) < len(MAGIC) + 2:
    fail(f"truncated: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header", reencode)
  (version,) = struct.unpack_from("<H", data, len(MAGIC))
  if version not in SUPPORTED_VERSIONS:
    fail(f"unsupported SJX format version {version} (this reader knows versions "
         f"{', '.join(map(str, SUPPORTED_VERSIONS))})", "use the sparse_jax release that wrote it")
  header = _HEADERS[version]
  if len(data) < header.size:
    fail(f"truncated: {len(data)} bytes, shorter than the {header.size}-byte header", reencode)
  (_, _, sample_rate, hop, window_samples, n_audio_samples, event_dim, events_per_window, n_events,
   bits, model_id, frame_bytes, *rest) = header.unpack_from(data, 0)
  level = float(rest[0]) if rest else 0.0
  if not (math.isfinite(level) and level >= 0):
    fail(f"corrupt header: level {level} is not a finite gain >= 0", reencode)
  n_audio_samples, source_sample_rate, source_channels = _unpack_length(n_audio_samples)
  refined = bool(events_per_window & REFINED_FLAG)
  events_per_window &= ~REFINED_FLAG

  for field, value in (("sample_rate", sample_rate), ("hop", hop),
                       ("window_samples", window_samples), ("event_dim", event_dim),
                       ("events_per_window", events_per_window)):
    if value == 0:
      fail(f"corrupt header: {field} is 0", reencode)
  if bits not in SUPPORTED_BITS:
    fail(f"corrupt header: {bits} bits per value (only 8 or 16 exist)", reencode)
  problem = header_problem(sample_rate, hop, window_samples, n_audio_samples)
  if problem:
    fail(f"corrupt header: {problem}", reencode)
  if frame_bytes < n_events or frame_bytes > n_events * _MAX_VARINT_BYTES:
    fail(f"corrupt header: {frame_bytes} frame bytes cannot hold {n_events} frames", reencode)

  size = encoded_size_bytes(n_events, frame_bytes, event_dim, bits, version)
  if len(data) < size:
    fail(f"truncated: {len(data)} bytes but the header declares {size}", reencode)
  if len(data) > size:
    fail(f"{len(data) - size} bytes of trailing data after the declared end ({size} bytes)",
         reencode)
  (stored_crc,) = struct.unpack_from("<I", data, size - CRC_BYTES)
  if zlib.crc32(data[:size - CRC_BYTES]) != stored_crc:
    fail("corrupt (CRC mismatch)", reencode)

  # The body, column by column (the sizes are known to fit).
  pos = header.size
  deltas, problem = _decode_varints(data[pos:pos + frame_bytes], n_events)
  if problem:
    fail(f"corrupt: {problem}", reencode)
  pos += frame_bytes

  def column(dtype, count):
    nonlocal pos
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
    pos += arr.nbytes
    return arr

  offset_codes = column("<i1", n_events)
  gains = column("<f2", n_events)
  scales = column("<f2", n_events)
  codes = column(_vector_dtype(bits), n_events * event_dim).reshape(n_events, event_dim)
  assert pos == size - CRC_BYTES

  if not np.all(np.isfinite(scales)) or np.any(scales < 0):
    fail("corrupt: a vector scale is negative or not finite", reencode)
  q = _levels(bits)
  if np.any(np.abs(codes.astype(np.int32)) > q) or np.any(offset_codes == -128):
    fail("corrupt: quantised values outside their range", reencode)
  # Frames are cumulative sums of deltas; an unsigned wrap-around would make them decrease.
  frames = np.cumsum(deltas, dtype=np.uint64)
  max_frame = n_audio_samples // hop  # < 2^32: the header check bounds n_audio_samples
  if n_events and (np.any(frames[1:] < frames[:-1]) or int(frames[-1]) > max_frame):
    fail(f"corrupt: event frames beyond the end of the audio (frame {max_frame})", reencode)
  # Before anything the length sizes is allocated (the EventSet, `info`'s windows, the decode).
  # The two length rules of docs/format.md: near the last event, and two windows per event.
  span = TAIL_WINDOWS * window_samples
  near_last = (int(frames[-1]) if n_events else 0) * hop + span
  if n_audio_samples > near_last:
    fail(f"corrupt header: n_audio_samples {n_audio_samples} reaches past its events (at most "
         f"{near_last}: the last event's frame times hop plus {TAIL_WINDOWS} windows)", reencode)
  budget = (n_events + 1) * span
  trusted = 0 if max_seconds is None else int(max_seconds * sample_rate)
  if n_audio_samples > max(budget, trusted):
    fail(f"declares {n_audio_samples / sample_rate:.1f} s of audio but its {n_events} events "
         f"span at most {budget / sample_rate:.1f} s (one event per {TAIL_WINDOWS} windows); "
         "a hostile or damaged file, or an old one of mostly silence", "if you trust it, pass "
         f"--max-seconds {math.ceil(n_audio_samples / sample_rate)} (Python: max_seconds=)")

  try:
    events = events_lib.EventSet(
        frames=frames.astype(np.int64), offsets=dequantise_offsets(offset_codes, hop),
        gains=gains.astype(np.float32), vectors=dequantise_vectors(codes, scales),
        sample_rate=sample_rate, hop=hop, window_samples=window_samples,
        n_audio_samples=n_audio_samples, model_id=model_id, events_per_window=events_per_window,
        refined=refined, source_sample_rate=source_sample_rate, source_channels=source_channels,
        level=level)
  except ValueError as e:
    fail(f"corrupt: {e}", reencode)

  if expected_model_id is not None and model_id != expected_model_id:
    fail(f"made by model {model_id.hex()[:12]}..., this checkpoint is "
         f"{expected_model_id.hex()[:12]}...", "decode with the checkpoint that encoded it")
  return events


def read(path, expected_model_id=None, max_seconds=None):
  """Reads a `.sjx` file.

  Args:
    path: the file.
    expected_model_id: 16 bytes (or hex) of the checkpoint about to decode it; None skips the check.
    max_seconds: see `decode_bytes`.

  Returns:
    The EventSet, events sorted by frame then offset.

  Raises:
    UserError: the file is missing or unreadable, or any problem listed in `decode_bytes`.
  """
  path = os.fspath(path)
  files.check_input_file(path, "an .sjx file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise UserError(f"{path}: cannot read: {e.strerror or e}; check the permissions") from None
  return decode_bytes(data, expected_model_id=expected_model_id, name=path,
                      max_seconds=max_seconds)


# ----------------------------------------------------------------------------------------------
# Bitrate.


def _worst_event_bytes(event_dim, bits):
  """Bytes one event may cost: a frame gap of up to 2 bytes (below 16384 frames: events of the
  same or the next window), the offset, gain, scale and vector."""
  return 2 + 1 + 2 + 2 + event_dim * bits // 8


def events_per_window_for_kbps(kbps, *, n_audio_samples, sample_rate, hop, window_samples,
                               event_dim, bits=8):
  """The most events per streaming window whose file stays at or below `kbps` (0: not even one).

  The bound counts every window full, each frame gap at 2 bytes, and the silent end marker, so
  the file the encoder writes (which drops events that would not help) is never above `kbps`.
  """
  n_windows = events_lib.stream_windows(n_audio_samples, hop, window_samples)[1]
  per_event = _worst_event_bytes(event_dim, bits)
  budget = kbps * 1000 / 8 * n_audio_samples / sample_rate - HEADER_BYTES - CRC_BYTES - per_event
  return max(int(budget // (per_event * n_windows)), 0)


def kbps_bound(events_per_window, *, n_audio_samples, sample_rate, hop, window_samples,
               event_dim, bits=8):
  """The most kbit/s a file of `events_per_window` events per window can take (the bound above)."""
  n_windows = events_lib.stream_windows(n_audio_samples, hop, window_samples)[1]
  per_event = _worst_event_bytes(event_dim, bits)
  size = HEADER_BYTES + CRC_BYTES + per_event * (events_per_window * n_windows + 1)
  return 8 * size / (n_audio_samples / sample_rate) / 1000


def bitrate_kbps(source, bits=8, duration_seconds=None):
  """File bits per second of audio, in kbit/s.

  Args:
    source: an EventSet (encoded with `bits` to measure its size), a path to a `.sjx` file, or a
      byte count (then `duration_seconds` is required).
    bits: bits per vector value, used only when `source` is an EventSet.
    duration_seconds: the audio duration; defaults to the EventSet's or the file's.

  Returns:
    8 * size_bytes / duration_seconds / 1000.
  """
  if isinstance(source, events_lib.EventSet):
    n_bytes = len(encode_bytes(source, bits))
    duration = source.duration_seconds
  elif isinstance(source, (int, np.integer)) and not isinstance(source, bool):
    if duration_seconds is None:
      raise ValueError("bitrate_kbps(n_bytes) needs duration_seconds")
    n_bytes, duration = int(source), None
  else:
    events = read(source)
    n_bytes = os.path.getsize(os.fspath(source))
    duration = events.duration_seconds
  if duration_seconds is not None:
    duration = duration_seconds
  if not duration > 0:
    raise ValueError(f"duration must be positive to compute a bitrate, got {duration}")
  return 8 * n_bytes / duration / 1000
