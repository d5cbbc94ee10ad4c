"""Real recordings from installed distribution packages, gathered into one training folder.

    python -m sparse_jax gather-audio ~/.cache/sparse_jax/pretrained_audio

writes mono OGG Vorbis excerpts at 22050 Hz of each source below into OUT/<source name>/, ready
for `--config.data.name=folder --config.data.root=OUT`.  Files are visited in a hashed order (the
same on every machine) until a source's minutes are spent; each contributes at most
`seconds_per_file`, from a hashed start.  The files of the real-audio benchmark's subset
(`subset.choose_clips` on `BENCHMARK_FOLDERS`) are never taken.  Existing outputs are kept, so a
second run only adds what is missing; every file is written atomically.
"""
import dataclasses
import hashlib
import io
import os
import zipfile

import numpy as np
import soundfile as sf

from sparse_jax import audio_io, files, progress
from sparse_jax.data import subset
from sparse_jax.errors import UserError

# The real-audio benchmark's default folders and subset (benchmarks/quality.py --real).
BENCHMARK_FOLDERS = ('/usr/share/hyperrogue/music', '/usr/share/scummvm/drascula/audio',
                     '/usr/share/asterisk/sounds/en_US_f_Allison')
BENCHMARK_CLIPS, BENCHMARK_SECONDS = 20, 8.0
# Vorbis quality 0.5: about 6.7 kB/s for music at 22050 Hz mono, transparent for training.
VORBIS_LEVEL = 0.5
# Excerpts shorter than this are not written.
MIN_SECONDS = 0.5


@dataclasses.dataclass(frozen=True)
class Source:
  """A folder (or a zip archive such as a game's .pk3) of recordings, and how much to take."""
  name: str
  path: str
  minutes: float
  seconds_per_file: float


def _classical_train() -> str:
  from sparse_jax.data import classical
  return os.path.join(classical.default_root(), 'train')


# The pretrained recipe's data (configs/pretrained.py): produced music of four styles, a speaker
# who is not the benchmark's, and the embedded classical renders.  About 2 hours, 45 MB.
def default_sources() -> list:
  return [
      # nexuiz-music: 18 electronic / rock tracks (GPL), inside the game's music.pk3.
      Source('nexuiz', '/usr/share/games/nexuiz/data/music.pk3', 40, 135),
      # hyperrogue-music and drascula-music: the tracks the benchmark does not use.
      Source('hyperrogue', '/usr/share/hyperrogue/music', 18, 110),
      Source('drascula', '/usr/share/scummvm/drascula/audio', 24, 60),
      # asterisk-core-sounds-fr-wav: Canadian French prompts (June), 8 kHz telephone speech.
      Source('speech_fr', '/usr/share/asterisk/sounds/fr_CA_f_June', 15, 60),
      Source('classical', _classical_train(), 20, 20),
  ]


# `gather-audio --more` adds these (docs/model_card.md: what the added data did).  Orchestral
# music, which no default source has, and speech in a third language by a male voice (the
# Spanish prompts are read by the benchmark's English speaker, so they are not taken).
def more_sources() -> list:
  return [
      # wesnoth-1.16-music: 41 orchestral tracks (GPL-2+).
      Source('wesnoth', '/usr/share/games/wesnoth/1.16/data/core/music', 40, 90),
      # asterisk-core-sounds-it-wav: Italian prompts (Carlo), 8 kHz telephone speech.
      Source('speech_it', '/usr/share/asterisk/sounds/it_IT_m_Carlo', 15, 60),
  ]


def _unit(*parts) -> float:
  digest = hashlib.sha256('/'.join(str(p) for p in parts).encode()).hexdigest()
  return int(digest[:12], 16) / float(1 << 48)


def _members(source: Source) -> list:
  """(relative name, opener) of every recording of a source, in its hashed order."""
  if os.path.isfile(source.path) and zipfile.is_zipfile(source.path):
    with zipfile.ZipFile(source.path) as z:
      names = [n for n in z.namelist()
               if os.path.splitext(n)[1].lower() in audio_io.AUDIO_EXTENSIONS]

    def opener(name):
      with zipfile.ZipFile(source.path) as z:
        return io.BytesIO(z.read(name))
  elif os.path.isdir(source.path):
    names = audio_io.find_files(source.path)

    def opener(name):
      return os.path.join(source.path, name)
  else:
    raise UserError(f'{source.path}: no such folder or archive; install the package that holds '
                    f'the {source.name} recordings (docs/training.md) or leave the source out')
  return sorted(((n, opener) for n in names), key=lambda item: _unit(source.name, item[0]))


def _excerpt(audio_T: np.ndarray, seconds: float, sample_rate: int, key: str) -> np.ndarray:
  length = int(seconds * sample_rate)
  if audio_T.size <= length:
    return audio_T
  start = int(_unit(key, 'start') * (audio_T.size - length))
  return audio_T[start:start + length]


def _write_ogg(path: str, audio_T: np.ndarray, sample_rate: int) -> None:
  with files.atomic_output(path) as tmp:
    # Block by block: libsndfile's Vorbis encoder crashes on one very long write.
    with sf.SoundFile(tmp, 'w', sample_rate, 1, format='OGG', subtype='VORBIS',
                      compression_level=VORBIS_LEVEL) as f:
      for i in range(0, audio_T.size, sample_rate):
        f.write(audio_T[i:i + sample_rate])


def check_output_folder(out_dir: str) -> None:
  """One line unless `out_dir` is a folder or can be made as one (before any recording is read)."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise UserError(f'{out_dir}: is a file; the recordings go into a folder: pass a folder path')
  parent = os.path.dirname(os.path.abspath(out_dir))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(f'{out_dir}: cannot be made, {parent} is a file; pass a folder path')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise UserError(f'{out_dir}: cannot be made, {parent} is not writable; pass another folder')


def gather(out_dir: str, sources=None, sample_rate: int = 22050, exclude=None,
           show_progress: bool = True) -> dict:
  """Writes the excerpts; returns {source name: minutes written} (existing files included).

  Args:
    out_dir: the training folder to fill.
    sources: the `Source`s (default: `default_sources()`).
    sample_rate: rate of the written files.
    exclude: absolute paths never taken (default: the benchmark subset's files).
  """
  check_output_folder(out_dir)
  sources = default_sources() if sources is None else sources
  if exclude is None:
    present = [f for f in BENCHMARK_FOLDERS if os.path.isdir(f)]
    exclude = subset.subset_paths(present, BENCHMARK_CLIPS, BENCHMARK_SECONDS) if present else set()
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f'{out_dir}: cannot make the folder ({e.strerror or e}); pass another') from None
  written = {}
  for source in sources:
    members = [(n, o) for n, o in _members(source)
               if os.path.abspath(os.path.join(source.path, n)) not in exclude]
    total, bar = 0.0, progress.bar(len(members), f'gathering {source.name}', unit='file',
                                   enabled=show_progress)
    for name, opener in members:
      if total >= source.minutes * 60:
        break
      dst = os.path.join(out_dir, source.name, os.path.splitext(name)[0] + '.ogg')
      if os.path.exists(dst):
        total += sf.info(dst).duration
        bar.update(1)
        continue
      try:
        audio_T = audio_io.load_audio(opener(name), sample_rate)
      except UserError:
        bar.update(1)
        continue  # an unreadable file in a package: pass it over
      clip_T = _excerpt(audio_T, min(source.seconds_per_file, source.minutes * 60 - total),
                        sample_rate, f'{source.name}/{name}')
      if clip_T.size < MIN_SECONDS * sample_rate:
        bar.update(1)
        continue  # a blip (or the budget's last fraction of a second): not worth a file
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      _write_ogg(dst, clip_T, sample_rate)
      total += clip_T.size / sample_rate
      bar.update(1)
    bar.close()
    written[source.name] = total / 60
  return written
