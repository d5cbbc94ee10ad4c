"""The encoder's onset rule: events start only where a note can start (`encode --at-onsets`).

The model, trained only to remove energy, starts events wherever energy is left, so a held note
is spelled as a string of re-attacks (docs/notes.md: onset precision 0.35 on the embedded test
split).  This rule asks a plain onset detector (librosa's spectral-flux `onset_detect`, the
anchor of `benchmarks/notes.py`) where the recording's notes start, and lets the removal loop
choose only frames within `RADIUS_SECONDS` of one.  A window whose first half holds no onset
keeps no event: what sounds there is left to the tails of earlier events.  The model is unchanged;
the rule trades removal for events that sit on notes (docs/notes.md measures both).
"""
import numpy as np

from sparse_jax.errors import UserError

# How far from a detected onset an event may start: half of the notes benchmark's +-50 ms
# tolerance, so an event the rule allows is always counted at that onset.
RADIUS_SECONDS = 0.025


def onset_frames(audio_T: np.ndarray, sample_rate: int, hop: int) -> np.ndarray:
  """The codec frames (int64, ascending) at which librosa detects an onset in `audio_T`.

  Frame t of the codec starts at sample hop * t, as librosa's (centred) frame t is at that time.
  """
  try:
    import librosa
  except ImportError:
    raise UserError("--at-onsets needs librosa: pip install 'sparse-jax[notes]'") from None
  audio_T = np.asarray(audio_T, np.float32)
  if not np.any(audio_T):
    return np.zeros(0, np.int64)
  frames = librosa.onset.onset_detect(y=audio_T, sr=sample_rate, hop_length=hop, units="frames")
  return np.asarray(frames, np.int64)


def allowed_frames(onsets_O: np.ndarray, start: int, n_frames: int, radius: int) -> np.ndarray:
  """(n_frames,) bool: the frames [start, start + n_frames) within `radius` of an onset."""
  frames_H = start + np.arange(n_frames)
  if onsets_O.size == 0:
    return np.zeros(n_frames, bool)
  # The nearest onset of each frame, by binary search in the sorted onsets.
  right = np.clip(np.searchsorted(onsets_O, frames_H), 0, onsets_O.size - 1)
  left = np.clip(right - 1, 0, onsets_O.size - 1)
  nearest = np.minimum(np.abs(onsets_O[right] - frames_H), np.abs(onsets_O[left] - frames_H))
  return nearest <= radius


def radius_frames(sample_rate: int, hop: int) -> int:
  """RADIUS_SECONDS in frames (at least 0: the onset frame itself)."""
  return int(RADIUS_SECONDS * sample_rate // hop)
