"""Recordings in a memory-mapped cache, and the fixed-length windows training and evaluation see.

`AudioSource` is an ordered list of recordings.  Each is decoded, downmixed and resampled once,
then kept as a float32 `.npy` in the cache folder and memory-mapped, so a random window costs a
page-in rather than a decode.  `SegmentSampler` draws the paper's training windows: a file chosen
uniformly at random (not weighted by length), a start uniformly at random, zero padding for short
files, and each window divided by its positive peak.  The draw is a pure function of (seed, step),
which makes multi-host runs and resumed runs see exactly the same data.
"""
import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Sequence

import numpy as np
import soundfile as sf

from sparse_jax import audio_io, files, progress
from sparse_jax.errors import UserError

# Bump when the decoding changes, so stale cache entries are never reused.
_CACHE_VERSION = 1
# Windows quieter than this RMS (about -60 dBFS) count as silence when choosing evaluation clips.
_SILENCE_RMS = 1e-3


@dataclasses.dataclass(frozen=True)
class AudioItem:
  """One recording.

  Attributes:
    name: a short, unique, human-readable id (a file stem, a MusicNet id).
    path: the file that holds it; its size and mtime key the cache.
    member: for a container holding many recordings (the MusicNet .npz), which one.
    read: for a container, a callable returning (audio_T, sample_rate); None for a plain audio file.
  """
  name: str
  path: str
  member: str | None = None
  read: Callable[[], tuple[np.ndarray, int]] | None = None


class AudioSource:
  """An ordered list of recordings, read as float32 mono at one sample rate from a mmap cache."""

  def __init__(self, items: Sequence[AudioItem], *, sample_rate: int, cache_dir: str = '',
               description: str = ''):
    """Builds the source; nothing is decoded until a recording is first asked for.

    Args:
      items: the recordings, in a deterministic order (the sampler indexes them).
      sample_rate: rate of every array that `audio` returns, in Hz.
      cache_dir: cache root ('' means $SPARSE_JAX_CACHE or ~/.cache/sparse_jax).
      description: what this is, for error messages (e.g. 'musicnet train split at /data/mn').
    """
    if not items:
      raise UserError(f'{description or "audio source"}: no audio files found; check the data root')
    self._items = list(items)
    self.sample_rate = int(sample_rate)
    self.cache_dir = os.path.join(cache_dir or files.default_cache_dir(), 'audio')
    self.description = description
    self._arrays: dict[int, np.ndarray] = {}
    # How many recordings this object decoded (not found in the cache): tests and logs use it.
    self.decode_count = 0

  @property
  def names(self) -> list:
    return [item.name for item in self._items]

  def __len__(self) -> int:
    return len(self._items)

  def __repr__(self) -> str:
    return f'AudioSource({self.description!r}, {len(self)} files, {self.sample_rate} Hz)'

  def cache_path(self, i: int) -> str:
    """The .npy that caches recording i: keyed by file path, size, mtime, member and rate."""
    item = self._items[i]
    try:
      st = os.stat(item.path)
    except OSError as e:
      raise UserError(f'{item.path}: cannot read ({e.strerror}); check the data root') from e
    key = '|'.join(str(x) for x in (os.path.realpath(item.path), st.st_size, st.st_mtime_ns,
                                     item.member, self.sample_rate, _CACHE_VERSION))
    digest = hashlib.sha1(key.encode()).hexdigest()[:20]
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', item.name)[:60]
    return os.path.join(self.cache_dir, f'{stem}-{self.sample_rate}-{digest}.npy')

  def audio(self, i: int) -> np.ndarray:
    """Recording i as float32 (T,) at `sample_rate`: a read-only memory map of the cache."""
    arr = self._arrays.get(i)
    if arr is not None:
      return arr
    path = self.cache_path(i)
    try:
      arr = np.load(path, mmap_mode='r')
    except FileNotFoundError:
      arr = None
    except ValueError:
      arr = None  # A damaged cache entry (e.g. a disk filled up before replace): decode again.
    if arr is None:
      self._decode_into(i, path)
      arr = np.load(path, mmap_mode='r')
    self._arrays[i] = arr
    return arr

  def _decode_into(self, i: int, path: str):
    item = self._items[i]
    if item.read is None:
      audio_T = audio_io.load_audio(item.path, self.sample_rate)
    else:
      audio_T, sr = item.read()
      audio_T = audio_io.resample(np.asarray(audio_T, np.float32).reshape(-1), sr, self.sample_rate)
      if audio_T.size == 0:
        raise UserError(f'{item.path}: recording {item.member} holds no samples; remove it')
    os.makedirs(self.cache_dir, exist_ok=True)
    with files.atomic_output(path) as tmp:
      np.save(tmp, np.ascontiguousarray(audio_T, dtype=np.float32))
    self.decode_count += 1

  def num_samples(self, i: int) -> int:
    """Length of recording i at `sample_rate` (decodes it into the cache if needed)."""
    return int(self.audio(i).shape[0])

  @property
  def total_seconds(self) -> float:
    """Total duration.  Reads file headers only for plain files that are not cached yet."""
    total = 0.0
    for i, item in enumerate(self._items):
      if i in self._arrays or item.read is not None or os.path.exists(self.cache_path(i)):
        total += self.num_samples(i) / self.sample_rate
      else:
        try:
          info = sf.info(item.path)
        except (sf.SoundFileError, RuntimeError) as e:
          raise UserError(
              f'{item.path}: cannot read audio header ({e}); remove or replace the file') from e
        total += info.frames / info.samplerate
    return float(total)

  def warm_cache(self, show_progress: bool = False) -> float:
    """Decodes every recording into the cache now (otherwise each is decoded on first use).

    Args:
      show_progress: a bar over the files, with the seconds of audio ready so far (a folder of
        long recordings takes minutes to decode the first time: the user sees it happen).

    Returns:
      The seconds of audio in the source.
    """
    bar = progress.bar(len(self), 'caching audio', unit='file', enabled=show_progress)
    seconds = 0.0
    for i in range(len(self)):
      seconds += self.audio(i).shape[0] / self.sample_rate
      bar.set_postfix_str(f'{seconds / 60:.1f} min ready', refresh=False)
      bar.update(1)
    bar.close()
    return seconds


def _window(audio_T: np.ndarray, start: int, n_samples: int) -> np.ndarray:
  """audio_T[start:start + n_samples] as a fresh float32 array, zero-padded at the end."""
  out = np.zeros(n_samples, np.float32)
  chunk = audio_T[start:start + n_samples]
  out[:chunk.shape[0]] = chunk
  return out


def _normalize(x_BxT: np.ndarray) -> np.ndarray:
  """The paper's normalisation: divide by the positive peak, x / (|max(x)| + 1e-12).

  It is max, not max-abs, on purpose: it matches the reference data pipeline.
  """
  return x_BxT / (np.abs(x_BxT.max(axis=-1, keepdims=True)) + 1e-12)


def _start(u: float, length: int, n_samples: int) -> int:
  """A uniform start in [0, length - n_samples] from u in [0, 1); 0 for a short file."""
  if length <= n_samples:
    return 0
  return min(int(u * (length - n_samples + 1)), length - n_samples)


class SegmentSampler:
  """Random fixed-length training windows, a deterministic function of (seed, step)."""

  def __init__(self, source: AudioSource, n_samples: int, seed: int, augment: bool = False):
    """Creates the sampler.

    Args:
      source: the recordings.
      n_samples: window length in samples.
      seed: non-negative integer; with the step number it fixes every batch.
      augment: pass every window through `augment.augment_window` (mixing, EQ, dynamics, room,
        noise), with draws seeded by (seed, step, row).
    """
    if n_samples <= 0:
      raise ValueError(f'n_samples must be positive, got {n_samples}')
    if seed < 0:
      raise ValueError(f'seed must be non-negative, got {seed}')
    self.source = source
    self.n_samples = int(n_samples)
    self.seed = int(seed)
    self.augment = bool(augment)

  def choices(self, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The global batch's draws for one step.

    Args:
      step: the training step (non-negative).
      batch_size: the global batch size.

    Returns:
      file_B: int64 (batch_size,) file indices, each uniform over the files.
      u_B: float64 (batch_size,) start fractions in [0, 1), mapped to starts by each file's length.
    """
    rng = np.random.default_rng([self.seed, int(step)])
    file_B = rng.integers(0, len(self.source), size=batch_size)
    u_B = rng.random(batch_size)
    return file_B, u_B

  def batch(self, step: int, batch_size: int, process_index: int = 0,
            process_count: int = 1) -> np.ndarray:
    """This process's rows of the global batch for `step`.

    Every process draws the same global choices and loads only its contiguous slice of rows, so the
    union over processes is the batch a single process would have seen.

    Args:
      step: the training step.
      batch_size: the GLOBAL batch size; must be divisible by process_count.
      process_index: this process, in [0, process_count).
      process_count: number of processes sharing the batch.

    Returns:
      audio_BxT: float32 (batch_size // process_count, n_samples), each row divided by its positive
        peak.
    """
    if batch_size % process_count:
      raise UserError(f'batch size {batch_size} is not divisible by the {process_count} processes; '
                      f'set the batch size to a multiple of {process_count}')
    if not 0 <= process_index < process_count:
      raise ValueError(f'process_index {process_index} not in [0, {process_count})')
    file_B, u_B = self.choices(step, batch_size)
    local = batch_size // process_count
    rows = range(process_index * local, (process_index + 1) * local)
    audio_BxT = np.zeros((local, self.n_samples), np.float32)
    for r, row in enumerate(rows):
      audio_BxT[r] = self._draw(int(file_B[row]), float(u_B[row]))
      if self.augment:
        audio_BxT[r] = self._augmented(audio_BxT[r], step, row)
    return _normalize(audio_BxT)

  def _draw(self, file_index: int, u: float) -> np.ndarray:
    audio_T = self.source.audio(file_index)
    return _window(audio_T, _start(u, audio_T.shape[0], self.n_samples), self.n_samples)

  def _augmented(self, audio_T: np.ndarray, step: int, row: int) -> np.ndarray:
    """Row `row` of the global batch of `step`, augmented (its own stream: any host agrees)."""
    from sparse_jax.data import augment
    rng = np.random.default_rng([self.seed, int(step), augment.ROW_STREAM, int(row)])
    other_T = self._draw(int(rng.integers(len(self.source))), float(rng.random()))
    return augment.augment_window(audio_T, other_T, rng, self.source.sample_rate)


def eval_clips(source: AudioSource, n_clips: int, n_samples: int, seed: int = 0) -> np.ndarray:
  """A fixed evaluation set: clips spread over the files, skipping near-silent windows.

  Files are visited in a seeded permutation, so n_clips <= len(source) gives one clip per file.
  For each clip up to 16 seeded starts are tried; the first whose RMS exceeds about -60 dBFS is
  kept, else the loudest.  The result depends only on (source, n_clips, n_samples, seed).

  Args:
    source: the recordings (normally a test split).
    n_clips: how many clips.
    n_samples: clip length in samples.
    seed: non-negative integer.

  Returns:
    audio_BxT: float32 (n_clips, n_samples), normalised like training windows.
  """
  # A 3-word seed keeps this stream apart from the training draws, which use [seed, step].
  rng = np.random.default_rng([int(seed), 0, 0x5EED])
  order = rng.permutation(len(source))
  audio_BxT = np.zeros((n_clips, n_samples), np.float32)
  for k in range(n_clips):
    audio_T = source.audio(int(order[k % len(source)]))
    best, best_rms = None, -1.0
    for u in rng.random(16):
      clip = _window(audio_T, _start(float(u), audio_T.shape[0], n_samples), n_samples)
      rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
      if rms > best_rms:
        best, best_rms = clip, rms
      if rms >= _SILENCE_RMS:
        break
    audio_BxT[k] = best
  return _normalize(audio_BxT)
