"""Baselines the codec is compared against, all decoding back to audio at the input's rate.

- `classic_codecs`: Opus and MP3 round trips, in process through soundfile (libsndfile).
- `matching_pursuit`: greedy matching pursuit over a multi-scale Gabor dictionary, with a real
  (quantised, bit-packed) atom bitstream.

Every baseline returns a `CodecResult`, defined here so the submodules share it without importing
each other.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class CodecResult:
  """One encode/decode round trip.

  Attributes:
    decoded_T: (T,) float64 decoded audio at the input's sample rate, aligned and cropped/padded to
      the input's length.
    kbps: bitrate of the coded stream measured from the encoded size, (bytes - header bytes) * 8 /
      duration / 1000.  The one-off per-file headers (Ogg Opus ID and comment pages, ~870 bytes;
      ID3 tags) are left out: they would dominate on short clips, and the codec's own rate is
      counted the same way (events only, no file header).
    name: short label for tables, e.g. 'opus-6k'.
    file_kbps: the whole file's size * 8 / duration / 1000, headers included.
  """
  decoded_T: np.ndarray
  kbps: float
  name: str
  file_kbps: float | None = None
