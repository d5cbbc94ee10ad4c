"""Training and evaluation data: recordings on disk -> fixed-length, peak-normalised windows.

    source = make_source(config.data, sample_rate=22050, split='train')
    sampler = SegmentSampler(source, n_samples=2**17, seed=config.seed)
    audio_BxT = sampler.batch(step, batch_size, jax.process_index(), jax.process_count())

`config.data` fields: `name` (one of DATASETS), `root` ('' means the default build location for
'classical' and is an error for the others), `cache_dir` ('' means $SPARSE_JAX_CACHE or
~/.cache/sparse_jax) and `augment` (training windows through `augment.augment_batch`).
"""
import os

from sparse_jax.data.segments import (
  AudioItem,
  AudioSource,
  SegmentSampler,
  eval_clips,
)
from sparse_jax.errors import UserError
from sparse_jax.files import default_cache_dir

# The one registry of dataset names: config validation and `make_source` both read it.
DATASETS = ('classical', 'musicnet', 'ljspeech', 'folder')


def make_source(data_config, *, sample_rate: int, split: str) -> AudioSource:
  """The recordings of one split of the configured dataset.

  Args:
    data_config: a ConfigDict (or any object) with fields name, root and cache_dir.
    sample_rate: the rate every recording is read at, in Hz.
    split: 'train' or 'test'.

  Returns:
    An AudioSource.

  Raises:
    UserError: unknown dataset name, missing root, or an empty split.
  """
  if split not in ('train', 'test'):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}")
  name = getattr(data_config, 'name', '')
  root = str(getattr(data_config, 'root', '') or '')
  if root:
    root = os.path.expanduser(root)
  cache_dir = str(getattr(data_config, 'cache_dir', '') or '')
  if cache_dir:
    cache_dir = os.path.expanduser(cache_dir)
  if name == 'classical':
    from sparse_jax.data import classical
    return classical.make_source(root, sample_rate=sample_rate, split=split, cache_dir=cache_dir)
  if name == 'musicnet':
    from sparse_jax.data import musicnet
    return musicnet.make_source(root, sample_rate=sample_rate, split=split, cache_dir=cache_dir)
  if name == 'ljspeech':
    from sparse_jax.data import ljspeech
    return ljspeech.make_source(root, sample_rate=sample_rate, split=split, cache_dir=cache_dir)
  if name == 'folder':
    from sparse_jax.data import folder
    return folder.make_source(root, sample_rate=sample_rate, split=split, cache_dir=cache_dir)
  raise UserError(f'data.name={name!r} is not a known dataset; set --config.data.name to one of '
                  f'{", ".join(DATASETS)}')


__all__ = ['AudioItem', 'AudioSource', 'DATASETS', 'SegmentSampler', 'UserError',
           'default_cache_dir', 'eval_clips', 'make_source']
