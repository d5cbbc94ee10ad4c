"""The embedded offline dataset: classical scores from the music21 corpus, rendered to audio.

Nothing is downloaded.  The music21 wheel ships the scores (Bach chorales, Mozart, Haydn and
Beethoven quartets, ...), the pretty_midi wheel ships a General MIDI soundfont (TimGM6mb.sf2), and
tinysoundfont renders MIDI with it.  A build chooses the movements and their split, renders each
in a worker process (`scores.render_movement`: MIDI, instruments, drums, soundfont; `pool.py`: the
workers and their deadlines), and writes

    ROOT/train/<name>.wav, ROOT/train/<name>.csv   16-bit WAV + note labels (MusicNet CSV format)
    ROOT/test/<name>.wav,  ROOT/test/<name>.csv
    ROOT/manifest.json                             one entry per rendered movement
    ROOT/.complete-<preset>                        written last: the preset finished

Labels use MusicNet's columns: start_time,end_time (samples at the rendered rate), instrument
(1-based GM program), note (MIDI pitch), start_beat (quarter notes from the start), end_beat (the
duration in beats, as in MusicNet), note_value.

Repeats are not expanded: each passage is played once.  Expansion is most of music21's export
time and fails outright on some corpus scores ("badly formed repeats"), and a repeat only
duplicates audio.  Durations are therefore shorter than a performance with repeats.

The split is by work (a whole quartet, or one chorale), from a hash of its corpus path, so the
same work lands in the same split for every preset and machine.

    python -m sparse_jax build-data --preset small [--root DIR] [--workers 2]
    python -m sparse_jax build-data --root DIR --instruments gm --percussion \
        [--soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2]     # varied instruments and drums
"""
import collections
import functools
import glob
import json
import os
import pathlib
import sys
import time
from collections.abc import Iterable

from sparse_jax import files, progress
from sparse_jax.data import pool
from sparse_jax.data.scores import (
  _EXT_PREFERENCE,
  SAMPLE_RATE,
  _hash01,
  composer_of,
  corpus_dir,
  output_name,
  render_movement,
  soundfont_path,
  style_of,
  work_of,
)
from sparse_jax.data.segments import AudioItem, AudioSource
from sparse_jax.errors import UserError

# Bump when rendering changes: entries rendered by another version are rendered again.
RENDER_VERSION = 1
PRESETS = ('tiny', 'small', 'full')
DEFAULT_TIMEOUT_S = 120.0
TEST_FRACTION = 0.10

# Composers with instrumental (or chorale) music in the corpus: the 'full' preset.
_COMPOSERS_FULL = ('bach', 'beethoven', 'mozart', 'haydn', 'schumann_robert', 'schumann_clara',
                   'weber', 'handel', 'joplin', 'schubert', 'verdi', 'corelli', 'chopin', 'cpebach')
# 'small': half the chorales, the Mozart and Haydn quartets and a few short piano and string
# pieces: about 3 hours of audio from about 7 CPU-minutes (the chorales are the cheapest audio).
_SMALL_COMPOSERS = ('bach', 'mozart', 'haydn')
_SMALL_CHORALE_FRACTION = 0.5
_SMALL_EXTRA = ('joplin/maple_leaf_rag.mxl', 'schumann_clara/polonaise_op1n1.mxl',
                'schumann_clara/polonaise_op1n2.mxl', 'corelli/opus3no1/1grave.xml',
                'cpebach/h186.mxl')
# Op. 132 is one file for the whole quartet and its export alone takes over two minutes.
_SKIP = ('beethoven/opus132.mxl',)
def default_root() -> pathlib.Path:
  """$SPARSE_JAX_DATA, else ~/.cache/sparse_jax/classical."""
  env = os.environ.get('SPARSE_JAX_DATA')
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path.home() / '.cache' / 'sparse_jax' / 'classical'


# ------------------------------------------------------------------------------------------------
# Which works, and which split.


def _core_paths() -> list:
  """Every score of music21's core corpus, relative to the corpus folder, '/'-separated."""
  from music21 import corpus
  base = corpus_dir()
  return sorted(os.path.relpath(str(p), base).replace(os.sep, '/') for p in corpus.getCorePaths())


def candidate_works() -> list:
  """All movements the 'full' preset renders, in corpus order (one encoding per score)."""
  by_stem: collections.OrderedDict = collections.OrderedDict()
  for rel in _core_paths():
    stem, ext = os.path.splitext(rel)
    if (composer_of(rel) not in _COMPOSERS_FULL or '/choraleAnalyses/' in rel or rel in _SKIP or
        ext not in _EXT_PREFERENCE):
      continue
    by_stem.setdefault(stem, []).append(rel)
  return [min(paths, key=lambda p: _EXT_PREFERENCE.index(os.path.splitext(p)[1]))
          for paths in by_stem.values()]


def assign_splits(corpus_paths) -> dict:
  """{corpus_path: 'train' | 'test'}, by work, about TEST_FRACTION test.

  Within a composer's n works, those whose hash falls below TEST_FRACTION go to test, topped up
  (lowest hashes first) to at least max(1, round(TEST_FRACTION * n)), so every large group is
  tested.  A composer with fewer than 4 works stays in train: one of two quartets in test would
  be half of that composer.  Computed over `candidate_works()`, a work's split does not depend on
  the preset.
  """
  works = collections.defaultdict(set)
  for p in corpus_paths:
    works[composer_of(p)].add(work_of(p))
  test_works = set()
  for group in works.values():
    ranked = sorted(group, key=_hash01)
    if len(ranked) < 4:
      continue
    n_test = sum(_hash01(w) < TEST_FRACTION for w in ranked)
    n_test = max(n_test, round(TEST_FRACTION * len(ranked)), 1)
    test_works.update(ranked[:n_test])
  return {p: ('test' if work_of(p) in test_works else 'train') for p in corpus_paths}


def list_works(preset: str) -> list:
  """The corpus paths a preset renders.

  Args:
    preset: 'tiny' (6 chorales: 4 train, 2 test; seconds to build), 'small' (half the chorales,
      the Mozart and Haydn quartets, a few short pieces), or 'full' (every candidate work).
  """
  if preset not in PRESETS:
    raise UserError(f'unknown preset {preset!r}; use one of {", ".join(PRESETS)}')
  works = candidate_works()
  if preset == 'full':
    return works
  # Each preset contains the smaller ones, so building a larger one later reuses the renders.
  # The chorale half is chosen by its own hash, independent of the split hash, so both splits
  # shrink alike.
  small = [p for p in works
           if (composer_of(p) in _SMALL_COMPOSERS or p in _SMALL_EXTRA) and
           (composer_of(p) != 'bach' or _hash01(work_of(p) + '#small') < _SMALL_CHORALE_FRACTION)]
  if preset == 'small':
    return small
  splits = assign_splits(works)
  chorales = [p for p in small if composer_of(p) == 'bach' and p.endswith('.mxl')]
  return ([p for p in chorales if splits[p] == 'train'][:4] +
          [p for p in chorales if splits[p] == 'test'][:2])


# ------------------------------------------------------------------------------------------------
# The build: one score per task, in worker processes with a per-work timeout (`pool.py`).


def _render_task(task) -> tuple:
  """Runs one task: ('ok', manifest entry) or ('error', one-line message)."""
  try:
    return ('ok', render_movement(task['corpus_path'], task['out_wav'], task['sample_rate'],
                                  task.get('style')))
  except Exception as e:
    # Report any failure of one score and go on: one bad score must not stop the build.
    message = str(e).splitlines()[0][:300] if str(e) else ''
    return ('error', f'{type(e).__name__}: {message}')


# The build's pool (tests replace it to see whether a build starts workers at all).
_Pool = functools.partial(pool.Pool, handler=_render_task)


class _Progress:
  """The build's progress bar (tqdm, sparse_jax/progress.py), weighted by each score's size so
  that the ETA follows the work rather than the count; the count and failures are in its label."""

  def __init__(self, total_cost: float, total_count: int, enabled: bool):
    self.total_count = total_count
    self.count = self.failed = 0
    self.bar = progress.bar(
        total_cost, self._label(), enabled=enabled,
        bar_format='{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]')

  def _label(self):
    return f'rendering {self.count}/{self.total_count} movements ({self.failed} failed)'

  def update(self, cost: float = 0.0, failed: bool = False, label: str = ''):
    self.count += cost > 0 or failed
    self.failed += failed
    self.bar.set_description_str(self._label(), refresh=False)
    self.bar.set_postfix_str(label[:30], refresh=False)
    self.bar.update(cost)

  def close(self):
    self.bar.close()


def _run_inline(tasks):
  """Like Pool.run, in this process and without timeouts (workers=0: debugging, notebooks)."""
  for task in tasks:
    status, payload = _render_task(task)
    yield task, status, payload


def _load_manifest(root: pathlib.Path) -> dict:
  path = root / 'manifest.json'
  if path.exists():
    try:
      manifest = json.loads(path.read_text())
      if manifest.get('format') == 'sparse_jax.classical':
        manifest.setdefault('works', {})
        manifest.setdefault('failed', {})
        return manifest
    except (ValueError, OSError):
      pass  # Damaged: rebuild the index; rendered files are re-rendered (they are cheap).
  return {'format': 'sparse_jax.classical', 'sample_rate': SAMPLE_RATE,
          'soundfont': 'TimGM6mb.sf2', 'works': {}, 'failed': {}}


def _save_manifest(root: pathlib.Path, manifest: dict):
  works = manifest['works']
  manifest['works'] = {k: works[k] for k in sorted(works)}
  manifest['summary'] = {
      split: {'works': sum(w['split'] == split for w in works.values()),
              'hours': round(sum(w['seconds'] for w in works.values()
                                 if w['split'] == split) / 3600, 3)}
      for split in ('train', 'test')}
  with files.atomic_output(root / 'manifest.json') as tmp:
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(manifest, f, indent=1)


def _is_done(root: pathlib.Path, name: str, entry) -> bool:
  if not entry or entry.get('render_version') != RENDER_VERSION:
    return False
  # Not Path.with_suffix: names such as 'bach_bwv66.6' contain dots.
  folder = root / entry['split']
  return (folder / (name + '.wav')).exists() and (folder / (name + '.csv')).exists()


def is_built(root) -> bool:
  """Whether some preset finished building at root."""
  root = pathlib.Path(root)
  return (root / 'manifest.json').exists() and bool(list(root.glob('.complete-*')))


def build(root=None, *, preset: str = 'small', workers: int = 2, progress: bool = True,
          timeout_s: float = DEFAULT_TIMEOUT_S, retry_failed: bool = False,
          style: dict | None = None) -> pathlib.Path:
  """Builds (or finishes building) the dataset.  Safe to interrupt and run again.

  Works already rendered are skipped, as are works that failed before (unless retry_failed).
  Each file is written atomically and the manifest after every work, so an interrupted build
  loses at most the works in flight.  `ROOT/.complete-<preset>` is written at the end.

  Args:
    root: output folder (None -> default_root()).
    preset: 'tiny', 'small' or 'full' (see list_works).
    workers: worker processes (the export is single-threaded CPU work); 0 renders in this
      process, without timeouts.
    progress: draw a progress bar on stderr.
    timeout_s: a work still exporting/rendering after this long is killed and recorded as failed.
    retry_failed: try works that failed in an earlier build again.
    style: `style_of(instruments, percussion, soundfont)`; a root holds one style, so another
      style needs another root (refused in one line otherwise).

  Returns:
    The root folder.
  """
  style = style or style_of()
  root = pathlib.Path(root).expanduser() if root else default_root()
  try:
    for split in ('train', 'test'):
      (root / split).mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f'{root}: cannot create the dataset folder ({e.strerror}); '
                    'pass --root DIR or set SPARSE_JAX_DATA to a writable folder') from e
  soundfont_path()  # Fail early, with the fix, if the soundfont is missing.
  works = list_works(preset)
  splits = assign_splits(candidate_works())
  manifest = _load_manifest(root)
  recorded = manifest.get('style', style_of())
  if manifest['works'] and recorded != style:
    raise UserError(f'{root} holds renders of another style ({recorded}); pass another --root '
                    'for this one (a root holds one style)')
  manifest['style'] = style
  if retry_failed:
    manifest['failed'] = {}
  corpus_root = corpus_dir()
  tasks = []
  for p in works:
    name = output_name(p)
    if _is_done(root, name, manifest['works'].get(name)) or p in manifest['failed']:
      continue
    cost = os.path.getsize(os.path.join(corpus_root, p))
    tasks.append({'corpus_path': p, 'name': name, 'split': splits[p], 'cost': cost,
                  'out_wav': str(root / splits[p] / (name + '.wav')), 'sample_rate': SAMPLE_RATE,
                  'style': style})
  # Longest first, so the two workers finish together rather than one waiting on a late quartet.
  tasks.sort(key=lambda t: -t['cost'])
  bar = _Progress(sum(t['cost'] for t in tasks), len(tasks), progress and bool(tasks))
  if progress:
    skipped = len(works) - len(tasks)
    print(f'classical/{preset}: {len(tasks)} movements to render, {skipped} already done or '
          f'failed before, into {root}', file=sys.stderr)
  start, last_save = time.monotonic(), 0.0
  try:
    results: Iterable
    if not tasks:
      results = ()  # Nothing to render: start no workers at all.
    elif workers > 0:
      results = _Pool(workers, timeout_s).run(tasks)
    else:
      results = _run_inline(tasks)
    for task, status, payload in results:
      p, name = task['corpus_path'], task['name']
      if status == 'ok':
        manifest['works'][name] = {'corpus_path': p, 'work': work_of(p), 'composer': composer_of(p),
                                   'split': task['split'], 'render_version': RENDER_VERSION,
                                   **payload}
      else:
        manifest['failed'][p] = {'error': payload, 'timeout_s': timeout_s}
      bar.update(task['cost'], status != 'ok', name)
      if time.monotonic() - last_save > 2.0:
        _save_manifest(root, manifest)
        last_save = time.monotonic()
  finally:
    bar.close()
    _save_manifest(root, manifest)
  # A build killed hard (no chance to save the manifest) can leave a rendered movement without an
  # entry: remove such orphans so that make_source, which lists the folders, matches the manifest.
  valid = {(w['split'], n) for n, w in manifest['works'].items()}
  ours = {output_name(p) for p in candidate_works()}
  for split in ('train', 'test'):
    for wav in (root / split).glob('*.wav'):
      if wav.stem in ours and (split, wav.stem) not in valid:
        wav.unlink()
        wav.with_suffix('.csv').unlink(missing_ok=True)
  rendered = [manifest['works'][output_name(p)] for p in works
              if output_name(p) in manifest['works']]
  summary = {'preset': preset, 'works': len(rendered),
             'failed': sorted(p for p in works if p in manifest['failed']),
             'hours': round(sum(w['seconds'] for w in rendered) / 3600, 3),
             'wall_s': round(time.monotonic() - start, 1)}
  with files.atomic_output(root / f'.complete-{preset}') as tmp:
    pathlib.Path(tmp).write_text(json.dumps(summary, indent=1))
  if progress:
    print(f'classical/{preset}: {summary["works"]} movements, {summary["hours"]:.2f} h of audio, '
          f'{len(summary["failed"])} failed, in {summary["wall_s"]:.0f} s -> {root}',
          file=sys.stderr)
  return root


# ------------------------------------------------------------------------------------------------
# Reading it back.


def make_source(root: str, *, sample_rate: int, split: str, cache_dir: str = '') -> AudioSource:
  """One split of a built dataset as an AudioSource.

  Args:
    root: the build folder ('' -> default_root()).
    sample_rate: target rate in Hz.
    split: 'train' or 'test'.
    cache_dir: cache root ('' -> default).

  Raises:
    UserError: not built (with the command that builds it), or the split is empty.
  """
  root_path = pathlib.Path(root).expanduser() if root else default_root()
  if not is_built(root_path):
    hint = ('run `python -m sparse_jax build-data`' if not root else
            f'run `python -m sparse_jax build-data --preset small --root {root_path}`')
    raise UserError(f'{root_path}: the classical dataset is not built (or its build was '
                    f'interrupted); {hint} (about 5 minutes)')
  files = sorted(glob.glob(str(root_path / split / '*.wav')))
  if not files:
    raise UserError(f'{root_path}: the classical {split} split has no files; rebuild with '
                    '`python -m sparse_jax build-data`')
  items = [AudioItem(name=os.path.splitext(os.path.basename(f))[0], path=f) for f in files]
  return AudioSource(items, sample_rate=sample_rate, cache_dir=cache_dir,
                     description=f'classical {split} split at {root_path}')
