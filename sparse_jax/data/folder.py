"""Any folder of recordings as a dataset: `--config.data.name=folder --config.data.root=DIR`.

Every audio file under DIR (recursive; wav, flac, ogg, mp3, aiff...; any rate and channel count)
is one recording, decoded, downmixed and resampled once into the cache like the other datasets.
About TEST_PERCENT % of the files go to the test split by a hash of their path relative to DIR:
stable across machines, file orders and additions (a new file moves no other).  A folder whose
hash puts no file in the test split (a handful of files) gives it the file of smallest hash, so
both splits are never empty when DIR holds two files or more.
"""
import hashlib
import os

from sparse_jax import audio_io
from sparse_jax.data.segments import AudioItem, AudioSource
from sparse_jax.errors import UserError

TEST_PERCENT = 5


def _hash(rel: str) -> int:
  # The relative path with '/' separators, so the split is the same on every OS.
  return int(hashlib.sha1(rel.replace(os.sep, '/').encode()).hexdigest()[:8], 16)


def split_of(rels: list) -> dict:
  """{relative path: 'train' | 'test'} for the files of one folder (see the module docstring)."""
  split = {rel: 'test' if _hash(rel) % 100 < TEST_PERCENT else 'train' for rel in rels}
  if len(rels) >= 2 and 'test' not in split.values():
    split[min(rels, key=_hash)] = 'test'
  return split


def make_source(root: str, *, sample_rate: int, split: str, cache_dir: str = '') -> AudioSource:
  """The train or test recordings under `root` as an AudioSource.

  Raises:
    UserError: empty or missing root, no audio files, or fewer than two (nothing to test on).
  """
  if not root:
    raise UserError('data.root is empty for the folder dataset: pass '
                    '--config.data.root=/path/to/recordings')
  if not os.path.isdir(root):
    raise UserError(f'{root}: no such folder; pass --config.data.root=/path/to/recordings')
  rels = audio_io.find_files(root)
  if len(rels) < 2:
    raise UserError(f'{root}: holds {len(rels)} audio file(s) '
                    f'({", ".join(e.lstrip(".") for e in audio_io.AUDIO_EXTENSIONS)}); the folder '
                    'dataset needs at least two (one is held out for testing)')
  chosen = [rel for rel, s in split_of(rels).items() if s == split]
  items = [AudioItem(name=os.path.splitext(rel)[0].replace(os.sep, '__'),
                     path=os.path.join(root, rel)) for rel in sorted(chosen)]
  return AudioSource(items, sample_rate=sample_rate, cache_dir=cache_dir,
                     description=f'folder {split} split at {root}')
