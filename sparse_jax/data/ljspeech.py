"""LJ-Speech 1.1 (Ito & Johnson 2017): 13,100 single-speaker clips at 22050 Hz.

Layout: `ROOT/wavs/<id>.wav` and `ROOT/metadata.csv` with lines `id|text|normalized text`.  The
archive extracts to `LJSpeech-1.1/`, which is also accepted as the root's only child.  There is no
official split, so about 2 % of ids go to test by a hash of the id: stable across machines, file
orders and dataset subsets.
"""
import csv
import hashlib
import os

from sparse_jax.data.segments import AudioItem, AudioSource
from sparse_jax.errors import UserError

TEST_PERCENT = 2


def is_test_id(clip_id: str) -> bool:
  """Whether a clip belongs to the test split (about TEST_PERCENT % of ids)."""
  return int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16) % 100 < TEST_PERCENT


def find_root(root: str) -> str:
  """The folder that holds wavs/, given it or its parent."""
  if not root:
    raise UserError(
        'data.root is empty for LJ-Speech: pass --config.data.root=/path/to/LJSpeech-1.1')
  for cand in (root, os.path.join(root, 'LJSpeech-1.1')):
    if os.path.isdir(os.path.join(cand, 'wavs')):
      return cand
  raise UserError(f'{root}: no wavs/ folder found; pass --config.data.root=/path/to/LJSpeech-1.1 '
                  '(the folder holding wavs/ and metadata.csv)')


def clip_ids(root: str) -> list:
  """Ids with a wav file, in metadata.csv order when it exists, else sorted."""
  wavs = {os.path.splitext(f)[0] for f in os.listdir(os.path.join(root, 'wavs'))
          if f.lower().endswith('.wav') and not f.startswith('.')}
  meta = os.path.join(root, 'metadata.csv')
  if os.path.isfile(meta):
    with open(meta, encoding='utf-8', newline='') as f:
      # The transcripts hold quote characters, so csv must not treat them as quoting.
      listed = [row[0] for row in csv.reader(f, delimiter='|', quoting=csv.QUOTE_NONE) if row]
    ids = [i for i in dict.fromkeys(listed) if i in wavs]
    if ids:
      return ids
  return sorted(wavs)


def make_source(root: str, *, sample_rate: int, split: str, cache_dir: str = '') -> AudioSource:
  """LJ-Speech's train or test clips as an AudioSource.

  Args:
    root: LJSpeech-1.1/ or the folder above it.
    sample_rate: target rate in Hz.
    split: 'train' or 'test'.
    cache_dir: cache root ('' -> default).
  """
  root = find_root(root)
  ids = [i for i in clip_ids(root) if is_test_id(i) == (split == 'test')]
  if not ids:
    raise UserError(f'{root}: the LJ-Speech {split} split has no clips (too few files in wavs/); '
                    'check that the archive was extracted completely')
  items = [AudioItem(name=i, path=os.path.join(root, 'wavs', i + '.wav')) for i in ids]
  return AudioSource(items, sample_rate=sample_rate, cache_dir=cache_dir,
                     description=f'ljspeech {split} split at {root}')
