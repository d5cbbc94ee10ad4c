"""The real-recording benchmark's fixed subset: which clips of which installed files.

`benchmarks/quality.py --real DIR ...` measures on `choose_clips(DIRS, 20, 8.0)`; the rule is here
so that anything training on the same folders (the pretrained recipe, `gather-audio`) can keep
exactly those files out.  It depends only on the files' relative paths and contents, so figures
compare from machine to machine and run to run.
"""
import hashlib
import os

import numpy as np
import soundfile as sf

from sparse_jax import audio_io

# A candidate clip quieter than this RMS (dBFS) is passed over for another start in its file.
QUIET_DBFS = -50.0
# Starts tried per file before passing it over.
N_STARTS = 8


def _hash_unit(*parts) -> float:
  """A number in [0, 1) fixed by its arguments (sha256), the same on every machine."""
  digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
  return int(digest[:12], 16) / float(1 << 48)


def find_recordings(folder: str) -> list:
  """Paths, relative to `folder` and sorted, of every recording below it (recursive)."""
  return audio_io.find_files(folder)


def choose_clips(folders, n_clips: int, clip_seconds: float, seed: int = 0) -> list:
  """The fixed subset: which file, from where, so that figures compare from run to run.

  Within each folder, files are ordered by sha256(seed/relative path) (so adding a file moves no
  other), those at least `clip_seconds` long first; the folders then take turns, in the order
  given, until `n_clips`.  In a long file the clip starts at the first of N_STARTS hashed
  positions whose RMS is above QUIET_DBFS; a shorter file is used whole.  A file with no such
  clip (digital silence, a fade) and an unreadable file are passed over for the folder's next.

  Returns:
    dicts: folder, path (relative), start and seconds (at the file's own rate), rate, channels.
  """
  queues = []
  for folder in folders:
    rows = []
    for rel in find_recordings(folder):
      try:
        info = sf.info(os.path.join(folder, rel))
      except (sf.SoundFileError, RuntimeError, TypeError, ValueError):
        continue
      if info.frames > 0:
        rows.append((info.duration < clip_seconds, _hash_unit(seed, rel), rel, info))
    queues.append([(folder, rel, info) for _, _, rel, info in sorted(rows)])
  clips: list[dict] = []
  while len(clips) < n_clips and any(queues):
    for queue in queues:
      while queue and len(clips) < n_clips:
        clip = _place_clip(*queue.pop(0), clip_seconds, seed)
        if clip is not None:
          clips.append(clip)
          break
  return clips


def _place_clip(folder, rel, info, clip_seconds: float, seed: int) -> dict | None:
  """Where in the file its clip starts (see `choose_clips`); None if every candidate is quiet."""
  length = min(int(round(clip_seconds * info.samplerate)), info.frames)
  try:
    audio_T = sf.read(os.path.join(folder, rel), dtype="float32", always_2d=True)[0].mean(1)
  except (sf.SoundFileError, RuntimeError, TypeError, ValueError):
    return None
  span = max(audio_T.size - length, 0)
  starts = [int(_hash_unit(seed, rel, i) * (span + 1)) for i in range(N_STARTS if span else 1)]
  loud = [s for s in starts
          if 20 * np.log10(np.sqrt(np.mean(audio_T[s:s + length]**2)) + 1e-12) > QUIET_DBFS]
  if not loud:
    return None
  return {"folder": folder, "path": rel, "start_s": loud[0] / info.samplerate,
          "seconds": length / info.samplerate, "rate": int(info.samplerate),
          "channels": int(info.channels)}


def load_clip(clip: dict, sample_rate: int) -> np.ndarray:
  """A chosen clip as mono float32 at `sample_rate` (downmixed, resampled)."""
  start = int(round(clip["start_s"] * clip["rate"]))
  stop = start + int(round(clip["seconds"] * clip["rate"]))
  with sf.SoundFile(os.path.join(clip["folder"], clip["path"])) as f:
    rate = f.samplerate
    if f.seekable():
      f.seek(start)
      audio_TxC = f.read(stop - start, dtype="float32", always_2d=True)
    else:  # e.g. GSM 6.10 in a WAV: libsndfile cannot seek in it, so read it whole and slice
      audio_TxC = f.read(f.frames, dtype="float32", always_2d=True)[start:stop]
  return audio_io.resample(audio_TxC.mean(axis=1), rate, sample_rate)


def subset_paths(folders, n_clips: int, clip_seconds: float, seed: int = 0) -> set:
  """Absolute paths of the files `choose_clips` takes clips from."""
  return {os.path.abspath(os.path.join(c["folder"], c["path"]))
          for c in choose_clips(folders, n_clips, clip_seconds, seed)}
