"""Opus and MP3 round trips at low bitrates, in process through soundfile (bundled libsndfile 1.2).

No system packages: the soundfile wheel carries libopus and LAME.  libsndfile chooses the bitrate
from `compression_level` in [0, 1], linearly:
  Opus: about 6 + 250 * (1 - level) kbps per channel (1.0 -> 6.3 kbps measured with Ogg overhead),
  MP3, constant bitrate: min + (max - min) * (1 - level) kbps, snapped by LAME to a legal MPEG
  bitrate (8..160 kbps at 16-24 kHz; 32..320 at 32-48 kHz; 8..64 at 8-12 kHz); level 1.0 raises,
  so 0.99 is the floor (8.05 kbps at 22050 Hz).
The reported bitrate is always measured from the file size, because Ogg/MP3 framing and LAME's
snapping make the achieved rate differ from the request.  `CodecResult.kbps` leaves out the one-off
file headers (Ogg Opus: the ID and comment header pages, ~870 bytes, which alone are 2.3 kbps on a
3 s clip); `CodecResult.file_kbps` is the whole file.

Both functions decode back to the input's rate, undo the codec delay (MP3 encoder delay, Opus
pre-skip) by cross-correlation, and crop/zero-pad to the input's length.
"""
from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import scipy.signal
import soundfile as sf

from sparse_jax import metrics
from sparse_jax.baselines import CodecResult

# Sample rates the Opus encoder accepts (libsndfile refuses 22050 Hz).
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# MP3 sample rates by MPEG version, with that version's legal constant-bitrate range in kbps.
_MP3_RANGES = (((8000, 11025, 12000), (8.0, 64.0)),
               ((16000, 22050, 24000), (8.0, 160.0)),
               ((32000, 44100, 48000), (32.0, 320.0)))
# Codec delays are well under this (MP3: ~1100 samples; Opus pre-skip is removed on decode).
_MAX_DELAY_SECONDS = 0.1


def _check_audio(audio_T, sample_rate) -> np.ndarray:
  audio_T = np.asarray(audio_T, dtype=np.float64)
  if audio_T.ndim != 1 or audio_T.size == 0:
    raise ValueError(f"audio_T must be a non-empty 1-D signal, got shape {audio_T.shape}")
  if not np.all(np.isfinite(audio_T)):
    raise ValueError("audio_T contains NaN or inf")
  if int(sample_rate) != sample_rate or sample_rate <= 0:
    raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
  return audio_T


def _resample(x_T: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
  if from_rate == to_rate:
    return x_T
  g = math.gcd(int(from_rate), int(to_rate))
  return scipy.signal.resample_poly(x_T, int(to_rate) // g, int(from_rate) // g)


def ogg_header_bytes(data: bytes) -> int:
  """Bytes of the Ogg pages whose granule position is 0: the Opus ID and comment headers.

  In Ogg Opus every audio page has a positive granule position (it counts the pre-skip), so the
  pages at granule 0 are exactly the header pages.
  """
  pos, header = 0, 0
  while pos + 27 <= len(data) and data[pos:pos + 4] == b"OggS":
    n_segments = data[pos + 26]
    size = 27 + n_segments + sum(data[pos + 27:pos + 27 + n_segments])
    if int.from_bytes(data[pos + 6:pos + 14], "little", signed=True) != 0:
      break
    header += size
    pos += size
  return header


def mp3_header_bytes(data: bytes) -> int:
  """Bytes of ID3 tags (v2 at the start, v1 at the end); 0 for a bare LAME stream."""
  header = 0
  if data[:3] == b"ID3" and len(data) >= 10:
    # ID3v2 size: four 7-bit ("syncsafe") bytes, plus the 10-byte tag header, plus a footer if any.
    size = 0
    for byte in data[6:10]:
      size = (size << 7) | (byte & 0x7F)
    header += 10 + size + (10 if data[5] & 0x10 else 0)
  if len(data) >= 128 and data[-128:-125] == b"TAG":
    header += 128
  return header


def _roundtrip_file(x_T: np.ndarray, rate: int, suffix: str, **write_kwargs) -> tuple[np.ndarray,
                                                                                     int, bytes]:
  """Encode x_T to a temporary file, read it back; returns (decoded, decoded_rate, file bytes)."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "roundtrip" + suffix)
    sf.write(path, x_T.astype(np.float32), rate, **write_kwargs)
    with open(path, "rb") as f:
      data = f.read()
    decoded_T, decoded_rate = sf.read(path, dtype="float64", always_2d=False)
  if decoded_T.ndim != 1:
    decoded_T = decoded_T[:, 0]
  return decoded_T, int(decoded_rate), data


def _finish(audio_T, decoded_T, sample_rate, n_bytes, header_bytes, name) -> CodecResult:
  max_lag = int(_MAX_DELAY_SECONDS * sample_rate)
  aligned_T = metrics.align(audio_T, decoded_T, max_lag)
  seconds = audio_T.size / sample_rate
  return CodecResult(decoded_T=aligned_T, kbps=(n_bytes - header_bytes) * 8.0 / seconds / 1000.0,
                     name=name, file_kbps=n_bytes * 8.0 / seconds / 1000.0)


def opus_compression_level(target_kbps: float) -> float:
  """libsndfile's Opus `compression_level` for a target bitrate (mono), clipped to [0, 1]."""
  return float(np.clip(1.0 - (target_kbps - 6.0) / 250.0, 0.0, 1.0))


def opus_roundtrip(audio_T, sample_rate: int, target_kbps: float = 6.0) -> CodecResult:
  """Encode with Opus in Ogg and decode again.

  Opus only takes 8/12/16/24/48 kHz, so other rates are resampled (polyphase) to the next rate up
  (22050 -> 24000) and back after decoding.  Opus cannot go much below ~6 kbps.

  Args:
    audio_T: (T,) mono float signal in [-1, 1].
    sample_rate: its rate in Hz.
    target_kbps: requested bitrate.

  Returns:
    CodecResult with decoded_T (T,) at sample_rate, the measured kbps (without file headers) and
    file_kbps (with them).
  """
  audio_T = _check_audio(audio_T, sample_rate)
  sample_rate = int(sample_rate)
  opus_rate = sample_rate if sample_rate in _OPUS_RATES else next(
      (r for r in _OPUS_RATES if r >= sample_rate), _OPUS_RATES[-1])
  x_T = _resample(audio_T, sample_rate, opus_rate)
  decoded_T, decoded_rate, data = _roundtrip_file(
      x_T, opus_rate, ".ogg", format="OGG", subtype="OPUS",
      compression_level=opus_compression_level(target_kbps))
  decoded_T = _resample(decoded_T, decoded_rate, sample_rate)
  return _finish(audio_T, decoded_T, sample_rate, len(data), ogg_header_bytes(data),
                 f"opus-{target_kbps:g}k")


def _mp3_rate_and_range(sample_rate: int) -> tuple[int, tuple[float, float]]:
  for rates, kbps_range in _MP3_RANGES:
    if sample_rate in rates:
      return sample_rate, kbps_range
  # Not an MP3 rate: use the next legal one up (or the highest).
  all_rates = sorted(r for rates, _ in _MP3_RANGES for r in rates)
  rate = next((r for r in all_rates if r >= sample_rate), all_rates[-1])
  return _mp3_rate_and_range(rate)


def mp3_compression_level(target_kbps: float, sample_rate: int) -> float:
  """libsndfile's MP3 `compression_level` for a constant target bitrate, clipped to [0, 0.99]."""
  _, (lo, hi) = _mp3_rate_and_range(int(sample_rate))
  return float(np.clip(1.0 - (target_kbps - lo) / (hi - lo), 0.0, 0.99))


def mp3_roundtrip(audio_T, sample_rate: int, target_kbps: float = 8.0) -> CodecResult:
  """Encode with LAME (MPEG-1/2 layer III, constant bitrate) and decode again.

  The decoded stream starts with the encoder delay (~1100 samples) and ends with padding; both are
  removed by alignment.  At 22050 Hz the floor is 8 kbps.

  Args:
    audio_T: (T,) mono float signal in [-1, 1].
    sample_rate: its rate in Hz.
    target_kbps: requested bitrate.

  Returns:
    CodecResult with decoded_T (T,) at sample_rate, the measured kbps (without file headers) and
    file_kbps (with them).
  """
  audio_T = _check_audio(audio_T, sample_rate)
  sample_rate = int(sample_rate)
  mp3_rate, _ = _mp3_rate_and_range(sample_rate)
  x_T = _resample(audio_T, sample_rate, mp3_rate)
  decoded_T, decoded_rate, data = _roundtrip_file(
      x_T, mp3_rate, ".mp3", format="MP3", subtype="MPEG_LAYER_III",
      compression_level=mp3_compression_level(target_kbps, mp3_rate), bitrate_mode="CONSTANT")
  decoded_T = _resample(decoded_T, decoded_rate, sample_rate)
  return _finish(audio_T, decoded_T, sample_rate, len(data), mp3_header_bytes(data),
                 f"mp3-{target_kbps:g}k")
