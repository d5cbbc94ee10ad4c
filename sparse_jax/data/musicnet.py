"""MusicNet (Thickstun et al. 2017) in either of its on-disk releases.

1. The folder release (Zenodo `musicnet.tar.gz`): `musicnet/{train,test}_data/<id>.wav` (44.1 kHz
   float32 mono) with `{train,test}_labels/<id>.csv` beside them.  The Kaggle mirror nests it one
   level deeper, so `train_data` is searched for under the root.
2. The legacy `musicnet.npz`: one entry per id holding (X, Y), X the 44.1 kHz samples and Y an
   `intervaltree.IntervalTree` of labels.  Only X is read; Y is skipped without importing
   intervaltree.

The ten official test recordings never enter the train split, whichever folder they sit in.
"""
import os
import pickle
import zipfile
from functools import partial

import numpy as np

from sparse_jax.data.segments import AudioItem, AudioSource
from sparse_jax.errors import UserError

SAMPLE_RATE = 44100
TEST_IDS = frozenset({'1759', '1819', '2106', '2191', '2298', '2303', '2382', '2416', '2556',
                      '2628'})
_AUDIO_EXTS = ('.wav', '.flac')
_MAX_SEARCH_DEPTH = 4


def _find_dir(root: str, name: str):
  """The shallowest folder called `name` at or below root (depth-limited), or None."""
  best = None
  for dirpath, dirnames, _ in os.walk(root):
    depth = os.path.relpath(dirpath, root).count(os.sep) + (dirpath != root)
    if depth >= _MAX_SEARCH_DEPTH:
      dirnames[:] = []
    dirnames.sort()
    if name in dirnames:
      cand = os.path.join(dirpath, name)
      if best is None or cand.count(os.sep) < best.count(os.sep):
        best = cand
  return best


def _find_npz(root: str):
  """root itself if it is an .npz file, else the shallowest musicnet*.npz below it, or None."""
  if os.path.isfile(root):
    return root if root.endswith('.npz') else None
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    if os.path.relpath(dirpath, root).count(os.sep) >= _MAX_SEARCH_DEPTH:
      dirnames[:] = []
    found += [os.path.join(dirpath, f) for f in filenames
              if f.endswith('.npz') and f.lower().startswith('musicnet')]
  return min(found, key=lambda p: (p.count(os.sep), p)) if found else None


def _audio_files(folder):
  """{id: path} for the audio files directly in folder (None -> {})."""
  if folder is None or not os.path.isdir(folder):
    return {}
  return {os.path.splitext(f)[0]: os.path.join(folder, f) for f in sorted(os.listdir(folder))
          if f.lower().endswith(_AUDIO_EXTS) and not f.startswith('.')}


class _SkipUnknown:
  """Stands in for any class the unpickler will not import (the labels' IntervalTree)."""

  def __new__(cls, *args, **kwargs):
    del args, kwargs
    return object.__new__(cls)

  def __init__(self, *args, **kwargs):
    pass

  def __setstate__(self, state):
    pass


# What the legacy pickle may construct: numpy arrays and plain containers.  Everything else (the
# intervaltree classes, and anything a tampered file might name) becomes an inert _SkipUnknown.
_ALLOWED_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode'),
    ('builtins', 'set'), ('builtins', 'frozenset'), ('builtins', 'list'), ('builtins', 'tuple'),
    ('builtins', 'dict'), ('builtins', 'object'), ('__builtin__', 'set'),
    ('__builtin__', 'frozenset'), ('__builtin__', 'list'), ('__builtin__', 'tuple'),
    ('__builtin__', 'dict'), ('__builtin__', 'object'), ('copy_reg', '_reconstructor'),
    ('copyreg', '_reconstructor'),
}


class _LabelTolerantUnpickler(pickle.Unpickler):
  """Unpickles (X, Y) without intervaltree installed: Y's classes become _SkipUnknown."""

  def find_class(self, module, name):
    if (module, name) in _ALLOWED_GLOBALS:
      return super().find_class(module, name)
    return _SkipUnknown


def _npz_ids(path: str) -> list:
  """Recording ids in a musicnet.npz (its member names, without reading any audio)."""
  try:
    with zipfile.ZipFile(path) as zf:
      return sorted(n[:-4] for n in zf.namelist() if n.endswith('.npy'))
  except (zipfile.BadZipFile, OSError) as e:
    raise UserError(f'{path}: not a readable .npz archive ({e}); re-download musicnet.npz') from e


def read_npz_audio(path: str, rec_id: str):
  """Reads recording `rec_id`'s samples X from the legacy musicnet.npz.

  Args:
    path: the .npz file.
    rec_id: a recording id such as '2494'.

  Returns:
    (audio_T float32 (T,), 44100).
  """
  try:
    with zipfile.ZipFile(path) as zf, zf.open(rec_id + '.npy') as f:
      version = np.lib.format.read_magic(f)
      header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
      _, _, dtype = header(f)
      if dtype.hasobject:
        # A Python-2 era pickle of (X, IntervalTree): latin1 decodes its byte strings.
        value = _LabelTolerantUnpickler(f, encoding='latin1').load()
      else:
        f.seek(0)
        value = np.lib.format.read_array(f)
  except (KeyError, zipfile.BadZipFile, OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
    raise UserError(f'{path}: cannot read recording {rec_id} ({type(e).__name__}: {e}); '
                    're-download musicnet.npz') from e
  if isinstance(value, np.ndarray) and value.dtype.hasobject:
    value = value[0] if value.ndim == 1 else value.item()
  if isinstance(value, (tuple, list)):
    value = value[0]
  audio_T = np.asarray(value, dtype=np.float32).reshape(-1)
  return audio_T, SAMPLE_RATE


def find_layout(root: str):
  """Detects which MusicNet release sits at root.

  Returns:
    ('folder', train_data_dir, test_data_dir or None) or ('npz', npz_path).

  Raises:
    UserError: neither release found.
  """
  if not root:
    raise UserError('data.root is empty for MusicNet: pass --config.data.root=/path/to/musicnet')
  if not os.path.exists(root):
    raise UserError(f'{root}: no such folder; pass --config.data.root=/path/to/musicnet')
  if os.path.isdir(root):
    if os.path.basename(os.path.normpath(root)) == 'train_data':
      root = os.path.dirname(os.path.normpath(root))
    train_dir = _find_dir(root, 'train_data')
    if train_dir is not None:
      test_dir = os.path.join(os.path.dirname(train_dir), 'test_data')
      return ('folder', train_dir, test_dir if os.path.isdir(test_dir) else None)
  npz = _find_npz(root)
  if npz is not None:
    return ('npz', npz)
  raise UserError(f'{root}: no MusicNet found (neither a train_data/ folder nor musicnet.npz); '
                  'extract musicnet.tar.gz there or point --config.data.root at it')


def split_ids(all_ids, test_folder_ids=()):
  """(train_ids, test_ids): official test ids, and anything in test_data/, go to test only."""
  test = sorted(set(test_folder_ids) | (set(all_ids) & TEST_IDS))
  train = sorted(set(all_ids) - set(test))
  return train, test


def make_source(root: str, *, sample_rate: int, split: str, cache_dir: str = '') -> AudioSource:
  """MusicNet's train or test recordings as an AudioSource.

  Args:
    root: the folder holding the release (or any folder above it), or the .npz file.
    sample_rate: target rate in Hz (44.1 kHz is resampled once into the cache).
    split: 'train' or 'test'.
    cache_dir: cache root ('' -> default).

  Returns:
    The AudioSource, items sorted by id.
  """
  layout = find_layout(root)
  if layout[0] == 'folder':
    _, train_dir, test_dir = layout
    train_files, test_files = _audio_files(train_dir), _audio_files(test_dir)
    files = {**train_files, **test_files}
    train_ids, test_ids = split_ids(files, test_files)
    ids = train_ids if split == 'train' else test_ids
    items = [AudioItem(name=i, path=files[i]) for i in ids]
    where = os.path.dirname(train_dir)
  else:
    _, npz = layout
    train_ids, test_ids = split_ids(_npz_ids(npz))
    ids = train_ids if split == 'train' else test_ids
    items = [AudioItem(name=i, path=npz, member=i, read=partial(read_npz_audio, npz, i))
             for i in ids]
    where = npz
  if not items:
    raise UserError(f'{where}: the MusicNet {split} split has no recordings; '
                    'check that the release was extracted completely')
  return AudioSource(items, sample_rate=sample_rate, cache_dir=cache_dir,
                     description=f'musicnet {split} split at {where}')
