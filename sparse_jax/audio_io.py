"""Reading and writing audio files: mono float32 at a requested rate in, atomic files out.

Everything that touches an audio file on disk goes through here, so a bad file always surfaces as
one `UserError` line naming the file and the fix, and a crash never leaves a half-written output.
"""
import contextlib
import math
import os
import uuid

import numpy as np
import soundfile as sf

from sparse_jax.errors import UserError

# Extension -> (libsndfile container, default subtype).
_FORMATS = {
    '.wav': ('WAV', 'PCM_16'),
    '.flac': ('FLAC', 'PCM_16'),
    '.ogg': ('OGG', 'VORBIS'),
}
# Subtypes that store integers, so values outside [-1, 1] would wrap or saturate unpredictably.
_INTEGER_SUBTYPES = ('PCM_S8', 'PCM_U8', 'PCM_16', 'PCM_24', 'PCM_32')


def resample(audio_T, sr_in: int, sr_out: int) -> np.ndarray:
  """Resamples a signal by the exact rational factor sr_out / sr_in.

  Args:
    audio_T: (T,) or (T, C) samples at `sr_in`.
    sr_in: input sample rate in Hz.
    sr_out: output sample rate in Hz.

  Returns:
    float32 array of shape (ceil(T * sr_out / sr_in),) (or with the channel axis kept).
  """
  audio_T = np.asarray(audio_T, dtype=np.float32)
  sr_in, sr_out = int(sr_in), int(sr_out)
  if sr_in <= 0 or sr_out <= 0:
    raise ValueError(f'sample rates must be positive, got {sr_in} -> {sr_out}')
  if sr_in == sr_out:
    return audio_T
  # Imported here: scipy.signal takes seconds to import, and most callers never resample.
  import scipy.signal  # pylint: disable=g-import-not-at-top
  g = math.gcd(sr_in, sr_out)
  # resample_poly is a polyphase FIR with a Kaiser window: exact for rational factors such as
  # 44100 -> 22050 (1/2) or 48000 -> 22050 (147/320), and much faster than FFT resampling.
  out = scipy.signal.resample_poly(audio_T, sr_out // g, sr_in // g, axis=0)
  return out.astype(np.float32, copy=False)


def load_audio(path, sample_rate: int) -> np.ndarray:
  """Reads any file libsndfile reads (wav/flac/ogg/mp3), downmixes to mono and resamples.

  Args:
    path: the audio file.
    sample_rate: the rate of the returned samples, in Hz.

  Returns:
    audio_T: float32 (T,) mono samples at `sample_rate`.

  Raises:
    UserError: the file is missing, unreadable, in an unsupported format, or holds no samples.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise UserError(f'{path}: no such audio file; check the path')
  if os.path.isdir(path):
    raise UserError(f'{path}: is a folder, not an audio file; pass a wav/flac/ogg/mp3 file')
  try:
    audio_TxC, sr_in = sf.read(path, dtype='float32', always_2d=True)
  except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    reason = reason.replace(f'Error opening {path!r}: ', '').rstrip('.')
    raise UserError(
        f'{path}: cannot read audio ({reason}); convert it to WAV, FLAC, OGG or MP3') from e
  if audio_TxC.shape[0] == 0 or audio_TxC.shape[1] == 0:
    raise UserError(f'{path}: the file holds no audio samples; pass a non-empty recording')
  audio_T = audio_TxC.mean(axis=1, dtype=np.float32)
  return resample(audio_T, sr_in, sample_rate)


@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary path beside `path`; on success it replaces `path` in one step.

  A reader therefore sees either the old file or the complete new one, never a partial file, and
  an interrupted writer leaves nothing behind (the temporary file is removed on any exception).

  Args:
    path: the final file path.

  Yields:
    The temporary path to write to (same folder, hidden name, same extension).
  """
  path = os.fspath(path)
  folder, base = os.path.split(os.path.abspath(path))
  _, ext = os.path.splitext(base)
  # Same folder, so os.replace is a rename on one filesystem; same extension, so tools that sniff
  # the format from the name still work.
  tmp = os.path.join(folder, f'.{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{ext}')
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_audio(path, audio_T, sample_rate: int, subtype=None):
  """Writes audio atomically; the format follows the extension (.wav, .flac, .ogg).

  Args:
    path: output file; its folder must exist.
    audio_T: (T,) mono or (T, C) samples, nominally in [-1, 1].
    sample_rate: in Hz.
    subtype: libsndfile subtype (e.g. 'PCM_16', 'PCM_24', 'FLOAT'); default PCM_16 for wav/flac and
      VORBIS for ogg.  Integer subtypes clip the samples to [-1, 1] first.

  Raises:
    UserError: unsupported extension or missing output folder.
  """
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  if ext not in _FORMATS:
    raise UserError(
        f'{path}: cannot write {ext or "extension-less"} files; use .wav, .flac or .ogg')
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f'{path}: the output folder {folder} does not exist; create it first')
  container, default_subtype = _FORMATS[ext]
  subtype = (subtype or default_subtype).upper()
  audio = np.asarray(audio_T, dtype=np.float32)
  if subtype in _INTEGER_SUBTYPES:
    audio = np.clip(audio, -1.0, 1.0)
  with atomic_output(path) as tmp:
    sf.write(tmp, audio, int(sample_rate), subtype=subtype, format=container)
