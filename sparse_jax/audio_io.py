"""Reading and writing audio files: mono float32 at a requested rate in, atomic files out.

Everything that touches an audio file on disk goes through here, so a bad file always surfaces as
one `UserError` line naming the file and the fix, and a crash never leaves a half-written output.
"""
import io
import math
import os

import numpy as np
import soundfile as sf

from sparse_jax import files
from sparse_jax.errors import UserError
from sparse_jax.files import atomic_output

# Extension -> (libsndfile container, default subtype).
_FORMATS = {
    '.wav': ('WAV', 'PCM_16'),
    '.flac': ('FLAC', 'PCM_16'),
    '.ogg': ('OGG', 'VORBIS'),
}
# What a folder of recordings is searched for (folder datasets, `encode DIR`, the real-audio
# benchmark): the formats libsndfile reads.
AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.oga', '.mp3', '.aif', '.aiff', '.au', '.w64')
# What an audio input should be, in the one line that refuses another kind of path.
AUDIO_FILE = 'an audio file (wav, flac, ogg, mp3)'
# Subtypes that store integers, so values outside [-1, 1] would wrap or saturate unpredictably.
_INTEGER_SUBTYPES = ('PCM_S8', 'PCM_U8', 'PCM_16', 'PCM_24', 'PCM_32')


def find_files(folder: str, skip: str | None = None,
                     extensions=AUDIO_EXTENSIONS) -> list:
  """Paths relative to `folder`, sorted, of every file of `extensions` below it (recursive).

  Hidden files and folders are left out, and so is the folder `skip` (an output folder inside
  the input one, which must never be read back).
  """
  folder = os.path.abspath(folder)
  skip = os.path.abspath(skip) if skip else None
  found = []
  for here, dirs, names in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.') and os.path.join(here, d) != skip)
    for name in names:
      if not name.startswith('.') and os.path.splitext(name)[1].lower() in extensions:
        found.append(os.path.relpath(os.path.join(here, name), folder))
  return sorted(found)


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
  import scipy.signal
  g = math.gcd(sr_in, sr_out)
  # resample_poly is a polyphase FIR with a Kaiser window: exact for rational factors such as
  # 44100 -> 22050 (1/2) or 48000 -> 22050 (147/320), and much faster than FFT resampling.
  out = scipy.signal.resample_poly(audio_T, sr_out // g, sr_in // g, axis=0)
  return out.astype(np.float32, copy=False)


def load_audio(path, sample_rate: int) -> np.ndarray:
  """Reads any file libsndfile reads (wav/flac/ogg/mp3), downmixes to mono and resamples.

  Args:
    path: the audio file, or a binary file object (standard input).
    sample_rate: the rate of the returned samples, in Hz.

  Returns:
    audio_T: float32 (T,) mono samples at `sample_rate`.

  Raises:
    UserError: the file is missing, unreadable, in an unsupported format, or holds no samples.
  """
  audio_TxC, sr_in = read_audio(path)
  return resample(downmix(audio_TxC), sr_in, sample_rate)


def downmix(audio) -> np.ndarray:
  """(T,) or (T, C) samples -> float32 (T,): the mean of the channels."""
  audio = np.asarray(audio, np.float32)
  return audio if audio.ndim == 1 else audio.mean(axis=1, dtype=np.float32)


def read_audio(path):
  """A file's samples as they are: (float32 (T, C), sample rate in Hz).

  Args:
    path: the audio file, or a binary file object such as standard input (read whole first:
      libsndfile seeks).

  Raises:
    UserError: the file is missing, unreadable, in an unsupported format, or holds no samples.
  """
  if hasattr(path, 'read'):
    name, source = '<stdin>', io.BytesIO(path.read())
  else:
    name = source = os.fspath(path)
    files.check_input_file(name, AUDIO_FILE)
  try:
    audio_TxC, sr_in = sf.read(source, dtype='float32', always_2d=True)
  except (sf.SoundFileError, sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    reason = reason.replace(f'Error opening {name!r}: ', '').rstrip('.')
    raise UserError(
        f'{name}: cannot read audio ({reason}); convert it to WAV, FLAC, OGG or MP3') from e
  if audio_TxC.shape[0] == 0 or audio_TxC.shape[1] == 0:
    raise UserError(f'{name}: the file holds no audio samples; pass a non-empty recording')
  return audio_TxC, int(sr_in)


def rms(audio) -> float:
  """The root mean square of every sample (all channels), in float64; 0 for no samples."""
  audio = np.asarray(audio)
  return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


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


def audio_bytes(audio_T, sample_rate: int, subtype=None, ext: str = '.wav') -> bytes:
  """The bytes of the file `write_audio` would write for `ext` (for standard output).

  libsndfile seeks back to finish a WAV header, which a pipe cannot do: the file is built in
  memory, then written in one go.
  """
  container, default_subtype = _FORMATS[ext]
  subtype = (subtype or default_subtype).upper()
  audio = np.asarray(audio_T, dtype=np.float32)
  if subtype in _INTEGER_SUBTYPES:
    audio = np.clip(audio, -1.0, 1.0)
  buffer = io.BytesIO()
  sf.write(buffer, audio, int(sample_rate), subtype=subtype, format=container)
  return buffer.getvalue()


def clipped_samples(audio, subtype=None, ext: str = '.wav') -> int:
  """How many samples writing `audio` as `ext` (with `subtype`) would clip: |x| > 1, unless float."""
  subtype = (subtype or _FORMATS.get(ext, ('', 'PCM_16'))[1]).upper()
  if subtype in ('FLOAT', 'DOUBLE'):
    return 0
  return int(np.count_nonzero(np.abs(np.asarray(audio)) > 1.0))


def to_format(audio_T, sample_rate: int, out_rate: int, channels: int) -> np.ndarray:
  """Mono audio at `sample_rate` resampled to `out_rate` and copied to `channels` channels.

  Returns (T',) for one channel, else (T', channels): the codec is mono, so every channel holds
  the same signal.  T' = round(T * out_rate / sample_rate), the input's length to within a sample.
  """
  audio_T = np.asarray(audio_T, np.float32).reshape(-1)
  n = int(round(audio_T.size * int(out_rate) / int(sample_rate)))
  out_T = resample(audio_T, sample_rate, out_rate)[:n]
  out_T = np.pad(out_T, (0, n - out_T.size))
  if channels <= 1:
    return out_T
  return np.repeat(out_T[:, None], int(channels), axis=1)
