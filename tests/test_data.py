"""Tests for sparse_jax.data: dataset layouts, the cache, the segment sampler, the classical set."""
import csv
import functools
import json
import math
import os
import sys
import time
import types

import ml_collections
import numpy as np
import pool_tasks
import pytest
import soundfile as sf

from sparse_jax import audio_io, data
from sparse_jax.data import classical, ljspeech, musicnet, segments
from sparse_jax.errors import UserError

# Part of `make test` (CI), not of `make test-fast`: renders the embedded dataset.
pytestmark = pytest.mark.slow


def _wav(path, audio, sr, subtype='FLOAT'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  sf.write(path, np.asarray(audio, np.float32), sr, subtype=subtype)


def _noise(n, seed):
  return np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)


def _config(name, root, cache_dir):
  return ml_collections.ConfigDict({'name': name, 'root': str(root), 'cache_dir': str(cache_dir)})


class _ArraySource(segments.AudioSource):
  """An in-memory source for sampler tests (no files, no cache)."""

  def __init__(self, arrays):
    super().__init__([segments.AudioItem(name=str(i), path='') for i in range(len(arrays))],
                     sample_rate=22050, cache_dir='unused')
    self._arrays = dict(enumerate(np.asarray(a, np.float32) for a in arrays))


# ------------------------------------------------------------------------------------------------
# MusicNet


def _musicnet_folder(base, ids_by_dir, n=4410):
  for folder, ids in ids_by_dir.items():
    for k, rec in enumerate(ids):
      _wav(os.path.join(base, folder, f'{rec}.wav'), _noise(n, int(rec)), 44100)
      labels = os.path.join(base, folder.replace('_data', '_labels'), f'{rec}.csv')
      os.makedirs(os.path.dirname(labels), exist_ok=True)
      with open(labels, 'w') as f:
        f.write('start_time,end_time,instrument,note,start_beat,end_beat,note_value\n')
        f.write(f'0,4410,1,{60 + k},0.0,1.0,Quarter\n')


def test_musicnet_folder_release_excludes_test_ids_from_train(tmp_path):
  base = tmp_path / 'musicnet'
  # 1759 is an official test id misplaced in train_data: it must still be test only.
  _musicnet_folder(base, {'train_data': ['1727', '1759', '2001'], 'test_data': ['1819', '2303']})
  (tmp_path / 'musicnet_metadata.csv').write_text('id,composer\n1727,Schubert\n')
  cache = tmp_path / 'cache'
  train = data.make_source(_config('musicnet', tmp_path, cache), sample_rate=22050, split='train')
  test = data.make_source(_config('musicnet', tmp_path, cache), sample_rate=22050, split='test')
  assert train.names == ['1727', '2001']
  assert test.names == ['1759', '1819', '2303']
  # 44.1 kHz is resampled 2:1 into the cache.
  audio = train.audio(0)
  expected = audio_io.resample(_noise(4410, 1727), 44100, 22050)
  np.testing.assert_allclose(audio, expected, atol=1e-6)
  assert train.total_seconds == pytest.approx(2 * 4410 / 44100)


def test_musicnet_kaggle_nesting_is_found(tmp_path):
  base = tmp_path / 'kaggle' / 'musicnet' / 'musicnet'
  _musicnet_folder(base, {'train_data': ['1727', '2628'], 'test_data': ['2106']})
  layout = musicnet.find_layout(str(tmp_path / 'kaggle'))
  assert layout == ('folder', str(base / 'train_data'), str(base / 'test_data'))
  src = musicnet.make_source(str(tmp_path / 'kaggle'), sample_rate=22050, split='test',
                             cache_dir=str(tmp_path / 'c'))
  assert src.names == ['2106', '2628']


class _FakeIntervalTree:
  def __init__(self, intervals):
    self.intervals = intervals


def test_musicnet_legacy_npz_reads_audio_without_the_label_package(tmp_path, monkeypatch):
  # Pickle the labels as an instance of a class from a module that will not exist at load time,
  # like intervaltree.IntervalTree on a machine without intervaltree.
  fake = types.ModuleType('fake_intervaltree')
  _FakeIntervalTree.__module__ = 'fake_intervaltree'
  fake.IntervalTree = _FakeIntervalTree
  _FakeIntervalTree.__qualname__ = 'IntervalTree'
  monkeypatch.setitem(sys.modules, 'fake_intervaltree', fake)
  recordings = {}
  for rec in ('1727', '1819'):
    value = np.empty(2, dtype=object)
    value[0] = _noise(8820, int(rec)).astype(np.float64)
    value[1] = _FakeIntervalTree({(0, 100, (1, 60))})
    recordings[rec] = value
  npz = tmp_path / 'musicnet.npz'
  np.savez(npz, **recordings)
  monkeypatch.delitem(sys.modules, 'fake_intervaltree')

  assert musicnet.find_layout(str(tmp_path)) == ('npz', str(npz))
  train = data.make_source(_config('musicnet', tmp_path, tmp_path / 'c'), sample_rate=22050,
                           split='train')
  test = data.make_source(_config('musicnet', npz, tmp_path / 'c'), sample_rate=22050,
                          split='test')
  assert (train.names, test.names) == (['1727'], ['1819'])
  np.testing.assert_allclose(train.audio(0), audio_io.resample(_noise(8820, 1727), 44100, 22050),
                             atol=1e-6)


def test_musicnet_missing_or_empty_root(tmp_path):
  with pytest.raises(UserError, match='--config.data.root'):
    data.make_source(_config('musicnet', '', tmp_path), sample_rate=22050, split='train')
  with pytest.raises(UserError, match='no such folder'):
    data.make_source(_config('musicnet', tmp_path / 'nope', tmp_path), sample_rate=22050,
                     split='train')
  with pytest.raises(UserError, match='no MusicNet found'):
    data.make_source(_config('musicnet', tmp_path, tmp_path), sample_rate=22050, split='train')
  os.makedirs(tmp_path / 'mn' / 'train_data')
  with pytest.raises(UserError, match='train split has no recordings'):
    data.make_source(_config('musicnet', tmp_path / 'mn', tmp_path), sample_rate=22050,
                     split='train')
  with pytest.raises(UserError, match='not a known dataset'):
    data.make_source(_config('imagenet', tmp_path, tmp_path), sample_rate=22050, split='train')


# ------------------------------------------------------------------------------------------------
# LJ-Speech


def test_ljspeech_split_is_by_id_and_deterministic(tmp_path):
  root = tmp_path / 'LJSpeech-1.1'
  ids = [f'LJ{c:03d}-{k:04d}' for c in range(1, 5) for k in range(1, 51)]  # 200 clips
  for i in ids:
    _wav(str(root / 'wavs' / f'{i}.wav'), np.full(64, 0.1, np.float32), 22050, 'PCM_16')
  with open(root / 'metadata.csv', 'w') as f:
    for i in ids:
      f.write(f'{i}|Text with "quotes" in it.|Text with "quotes" in it.\n')

  cfg = _config('ljspeech', tmp_path, tmp_path / 'c')  # the parent folder is accepted too
  train = data.make_source(cfg, sample_rate=22050, split='train')
  test = data.make_source(cfg, sample_rate=22050, split='test')
  assert set(train.names) | set(test.names) == set(ids)
  assert not set(train.names) & set(test.names)
  assert 1 <= len(test) <= 10  # about 2 % of 200
  assert test.names == [i for i in ids if ljspeech.is_test_id(i)]  # metadata order, by id only
  with pytest.raises(UserError, match='LJSpeech-1.1'):
    data.make_source(_config('ljspeech', tmp_path / 'c', tmp_path), sample_rate=22050,
                     split='train')


# ------------------------------------------------------------------------------------------------
# The cache


def test_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path):
  path = tmp_path / 'a.wav'
  _wav(str(path), _noise(4410, 1), 44100)
  items = [segments.AudioItem(name='a', path=str(path))]
  first = segments.AudioSource(items, sample_rate=22050, cache_dir=str(tmp_path / 'c'))
  a = np.array(first.audio(0))
  assert first.decode_count == 1
  cached = first.cache_path(0)
  mtime = os.stat(cached).st_mtime_ns

  second = segments.AudioSource(items, sample_rate=22050, cache_dir=str(tmp_path / 'c'))
  b = second.audio(0)
  assert second.decode_count == 0  # not decoded or resampled again
  assert isinstance(b, np.memmap) and b.dtype == np.float32
  assert os.stat(cached).st_mtime_ns == mtime
  np.testing.assert_array_equal(a, b)

  # Another rate is another entry; a rewritten file is another key.
  other_rate = segments.AudioSource(items, sample_rate=16000, cache_dir=str(tmp_path / 'c'))
  assert other_rate.num_samples(0) == math.ceil(4410 * 16000 / 44100)
  time.sleep(0.01)
  _wav(str(path), _noise(2205, 2), 44100)
  third = segments.AudioSource(items, sample_rate=22050, cache_dir=str(tmp_path / 'c'))
  assert third.cache_path(0) != cached
  np.testing.assert_allclose(third.audio(0), audio_io.resample(_noise(2205, 2), 44100, 22050),
                             atol=1e-6)
  assert third.decode_count == 1


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
  monkeypatch.setenv('SPARSE_JAX_CACHE', str(tmp_path))
  assert data.default_cache_dir() == str(tmp_path)
  monkeypatch.delenv('SPARSE_JAX_CACHE')
  assert data.default_cache_dir() == os.path.join(os.path.expanduser('~'), '.cache', 'sparse_jax')


# ------------------------------------------------------------------------------------------------
# The segment sampler


def _expected_row(source, file_index, u, n):
  x = np.asarray(source.audio(file_index))
  start = 0 if len(x) <= n else min(int(u * (len(x) - n + 1)), len(x) - n)
  seg = np.zeros(n, np.float32)
  chunk = x[start:start + n]
  seg[:len(chunk)] = chunk
  return seg / (np.abs(seg.max()) + 1e-12)


def test_sampler_matches_the_formula_and_is_deterministic():
  # The 2nd file is short, and mostly negative: its positive peak (~0.2) is not its max-abs (~0.8).
  arrays = [_noise(5000, 1), _noise(300, 2) - 0.3, _noise(1200, 3)]
  source = _ArraySource(arrays)
  sampler = data.SegmentSampler(source, n_samples=1024, seed=7)
  batch = sampler.batch(step=3, batch_size=16)
  assert batch.shape == (16, 1024) and batch.dtype == np.float32

  file_B, u_B = sampler.choices(3, 16)
  for r in range(16):
    np.testing.assert_allclose(batch[r], _expected_row(source, file_B[r], u_B[r], 1024), rtol=1e-6)
  # The short file is zero-padded, and divided by its positive peak (max, not max-abs).
  short_rows = np.flatnonzero(file_B == 1)
  assert short_rows.size
  row = batch[short_rows[0]]
  assert np.all(row[300:] == 0)
  np.testing.assert_allclose(row[:300], arrays[1] / arrays[1].max(), rtol=1e-5)
  assert row.min() < -2.5  # dividing by max-abs would keep it within [-1, 1]

  again = data.SegmentSampler(_ArraySource(arrays), n_samples=1024, seed=7)
  np.testing.assert_array_equal(again.batch(step=3, batch_size=16), batch)
  assert not np.array_equal(sampler.batch(step=4, batch_size=16), batch)
  assert not np.array_equal(data.SegmentSampler(source, 1024, seed=8).batch(3, 16), batch)


def test_sampler_process_slices_concatenate_to_the_global_batch():
  source = _ArraySource([_noise(4000 + 500 * k, k) for k in range(5)])
  sampler = data.SegmentSampler(source, n_samples=512, seed=0)
  full = sampler.batch(11, 8)
  parts = [sampler.batch(11, 8, process_index=p, process_count=4) for p in range(4)]
  assert all(p.shape == (2, 512) for p in parts)
  np.testing.assert_array_equal(np.concatenate(parts), full)
  with pytest.raises(UserError, match='divisible'):
    sampler.batch(11, 6, process_index=0, process_count=4)


def test_sampler_picks_files_uniformly_not_by_length():
  source = _ArraySource([_noise(100_000, 0), _noise(2_000, 1)])
  sampler = data.SegmentSampler(source, n_samples=256, seed=1)
  files = np.concatenate([sampler.choices(step, 64)[0] for step in range(50)])
  assert abs(files.mean() - 0.5) < 0.05  # length-weighted would give about 0.02
  starts_u = np.concatenate([sampler.choices(step, 64)[1] for step in range(50)])
  assert abs(starts_u.mean() - 0.5) < 0.03 and starts_u.min() >= 0 and starts_u.max() < 1


def test_eval_clips_are_deterministic_spread_and_skip_silence():
  sr = 22050
  # File k is silent for its first half, then a tone at a frequency unique to it.
  arrays = []
  for k in range(4):
    x = np.zeros(40_000, np.float32)
    x[20_000:] = 0.3 * np.sin(2 * np.pi * (500 + 500 * k) * np.arange(20_000) / sr)
    arrays.append(x)
  source = _ArraySource(arrays)
  clips = data.eval_clips(source, n_clips=4, n_samples=2048, seed=0)
  assert clips.shape == (4, 2048)
  np.testing.assert_array_equal(clips, data.eval_clips(_ArraySource(arrays), 4, 2048, seed=0))
  rms = np.sqrt(np.mean(clips[:, -1024:] ** 2, axis=1))
  assert np.all(rms > 0.3)  # the audible halves were found (normalised tones have RMS ~0.7)
  freqs = sorted(round(np.argmax(np.abs(np.fft.rfft(c[-1024:]))) * sr / 1024 / 500) for c in clips)
  assert freqs == [1, 2, 3, 4]  # one clip from each file
  np.testing.assert_allclose(clips.max(axis=1), 1.0, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# The classical dataset


def test_render_one_chorale(tmp_path):
  out = tmp_path / 'chorale.wav'
  seconds = classical.render_movement('bach/bwv66.6', out)['seconds']

  audio, sr = sf.read(out, dtype='float32')
  info = sf.info(out)
  assert (sr, info.channels, info.subtype) == (22050, 1, 'PCM_16')
  assert seconds == pytest.approx(len(audio) / sr, abs=1e-3)
  assert 15 < seconds < 40  # 23 s at the score's tempo (plus a short release)
  assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), abs=1e-3)  # -1 dBFS
  assert np.sqrt(np.mean(audio ** 2)) > 0.03

  with open(tmp_path / 'chorale.csv') as f:
    rows = list(csv.reader(f))
  assert rows[0] == ['start_time', 'end_time', 'instrument', 'note', 'start_beat', 'end_beat',
                     'note_value']
  labels = np.array([[float(v) for v in r[:6]] for r in rows[1:]])
  # music21 counts 165 notes; ties merge a few into one sounding note.
  assert 150 <= len(labels) <= 180
  assert np.all(labels[:, 1] > labels[:, 0]) and labels[:, 1].max() <= len(audio)
  assert 36 <= labels[:, 3].min() and labels[:, 3].max() <= 84  # four voices' range
  assert np.all(labels[:, 2] >= 1)  # 1-based programs
  # The audio is loud where the labels say notes sound and silent after the last note.
  last_end = int(labels[:, 1].max())
  assert np.abs(audio[last_end + 22050:]).max(initial=0) < 0.05


def test_splits_are_by_work_deterministic_and_cover_large_groups():
  works = classical.candidate_works()
  splits = classical.assign_splits(works)
  assert splits == classical.assign_splits(list(reversed(works)))
  by_work = {}
  for path, split in splits.items():
    by_work.setdefault(classical.work_of(path), set()).add(split)
  assert all(len(s) == 1 for s in by_work.values())  # a quartet's movements stay together
  test_fraction = np.mean([s == {'test'} for s in by_work.values()])
  assert 0.07 < test_fraction < 0.15
  for composer in ('bach', 'beethoven', 'mozart'):
    assert any(s == {'test'} for w, s in by_work.items() if w.startswith(composer + '/'))
  assert not any('choraleAnalyses' in p or p == 'beethoven/opus132.mxl' for p in works)
  assert 'bach/bwv277.mxl' in works and 'bach/bwv277.krn' not in works
  assert {'train', 'test'} == {splits[p] for p in classical.list_works('tiny')}


def test_pool_kills_a_task_over_its_limit_and_keeps_the_rest():
  # Durations are fixed by construction (an instant answer, a 600 s sleep), so the verdict does
  # not depend on how fast or how loaded the machine is.
  pool = classical._Pool(2, timeout_s=60.0, handler=pool_tasks.instant)
  results = {task: (status, payload) for task, status, payload in pool.run([1, 2, 3])}
  assert results == {t: ('ok', {'task': t}) for t in (1, 2, 3)}

  pool = classical._Pool(1, timeout_s=0.5, handler=pool_tasks.never_in_time)
  start = time.monotonic()
  results = list(pool.run(['slow']))
  assert results == [('slow', 'timeout', 'took over 0.5 s')]
  assert time.monotonic() - start < 300  # killed, not waited for (the task sleeps 600 s)
  assert pool.workers == []


def test_build_is_idempotent_and_survives_a_timeout(tmp_path, monkeypatch):
  monkeypatch.setattr(classical, 'list_works', lambda preset: ['bach/bwv66.6.mxl'])
  root = tmp_path / 'classical'
  # A render that cannot finish within its limit (it sleeps 600 s): the work is killed and
  # recorded as failed, and nothing of it is left on disk.
  real_pool = classical._Pool
  monkeypatch.setattr(classical, '_Pool', functools.partial(real_pool,
                                                            handler=pool_tasks.never_in_time))
  classical.build(root, preset='tiny', workers=1, progress=False, timeout_s=0.5)
  monkeypatch.setattr(classical, '_Pool', real_pool)
  manifest = json.loads((root / 'manifest.json').read_text())
  assert list(manifest['failed']) == ['bach/bwv66.6.mxl'] and not manifest['works']
  assert not list(root.rglob('*.wav')) and not list(root.rglob('*.tmp*'))

  classical.build(root, preset='tiny', workers=1, progress=False, retry_failed=True)
  wav = root / 'train' / 'bach_bwv66.6.wav'
  assert wav.exists() and (root / 'train' / 'bach_bwv66.6.csv').exists()
  entry = json.loads((root / 'manifest.json').read_text())['works']['bach_bwv66.6']
  assert entry['composer'] == 'bach' and entry['split'] == 'train' and entry['seconds'] > 15
  mtime = wav.stat().st_mtime_ns

  # Nothing left to do: no worker is even started, and the file is untouched.
  monkeypatch.setattr(classical, '_Pool', None)
  classical.build(root, preset='tiny', workers=1, progress=False)
  assert wav.stat().st_mtime_ns == mtime
  assert classical.is_built(root)
  src = data.make_source(_config('classical', root, tmp_path / 'c'), sample_rate=22050,
                         split='train')
  assert src.names == ['bach_bwv66.6']
  np.testing.assert_allclose(src.audio(0), sf.read(wav, dtype='float32')[0])
  with pytest.raises(UserError, match='test split has no files'):
    data.make_source(_config('classical', root, tmp_path / 'c'), sample_rate=22050, split='test')


def test_classical_not_built_says_how_to_build(tmp_path, monkeypatch):
  monkeypatch.setenv('SPARSE_JAX_DATA', str(tmp_path / 'nothing'))
  assert classical.default_root() == tmp_path / 'nothing'
  with pytest.raises(UserError, match='python -m sparse_jax build-data'):
    data.make_source(_config('classical', '', tmp_path / 'c'), sample_rate=22050, split='train')


def test_gm_instruments_and_percussion_render_varied_works(tmp_path):
  root = str(tmp_path / "gm")
  style = classical.style_of("gm", percussion=True)
  classical.build(root, preset="tiny", workers=0, progress=False, style=style)
  with open(os.path.join(root, "manifest.json")) as f:
    manifest = json.load(f)
  assert manifest["style"] == style
  works = manifest["works"]
  # Every part a melodic GM program, drawn per work and part: the works do not share one palette.
  programs = [tuple(w["programs"]) for w in works.values()]
  assert all(0 <= p < 120 for ps in programs for p in ps)
  assert len(set(programs)) == len(programs)
  drums = [w["percussion"] for w in works.values()]
  assert any(drums) and not all(drums)  # about half of the works
  # The drum track is audible: a work with drums has more energy in its first beat's attack than
  # the same work rendered without (the crash opens the piece), and its labels hold no drum note.
  name = next(n for n, w in works.items() if w["percussion"])
  corpus_path = works[name]["corpus_path"]
  plain = str(tmp_path / "plain.wav")
  classical.render_movement(corpus_path, plain, style=classical.style_of("gm"))
  with_drums = os.path.join(root, works[name]["split"], name + ".wav")
  a, _ = sf.read(plain)
  b, _ = sf.read(with_drums)

  def high_share(x):  # cymbals and hi-hats: the share of the energy above 6 kHz
    power = np.abs(np.fft.rfft(x))**2
    return power[int(6000 / 11025 * power.size):].sum() / power.sum()

  assert high_share(b) > 2 * high_share(a), (high_share(b), high_share(a))  # measured: 3.0x
  with open(os.path.join(root, works[name]["split"], name + ".csv")) as f:
    labels = list(csv.DictReader(f))
  assert labels
  n_plain = sum(1 for _ in open(str(tmp_path / "plain.csv"))) - 1
  assert len(labels) == n_plain  # the drum notes are not labelled
  # A root holds one style: another style is refused in one line.
  with pytest.raises(UserError, match="another style"):
    classical.build(root, preset="tiny", workers=0, progress=False)
  with pytest.raises(UserError, match="fluid-soundfont-gm"):
    classical.style_of("gm", soundfont=str(tmp_path / "missing.sf2"))
