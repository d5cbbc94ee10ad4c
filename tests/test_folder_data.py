"""The folder dataset, training-time augmentation and `gather-audio`: real recordings in, exactly
resumable training out."""
import json
import os
import zipfile

import numpy as np
import pytest
import soundfile as sf
import synthetic

from sparse_jax import data, training
from sparse_jax.data import augment, folder, gather
from sparse_jax.errors import UserError

# Part of `make test` (CI), not of `make test-fast`: trains on a folder with augmentation.
pytestmark = pytest.mark.slow

SR = 22050


def _write_folder(root, n_files=6, seconds=1.5):
  """n notes sequences as wav/flac/ogg, in sub-folders, at other rates and channel counts."""
  paths = []
  for i in range(n_files):
    rate = (22050, 44100, 16000)[i % 3]
    audio = synthetic.note_sequence(int(seconds * rate), rate, seed=i)
    if i % 2:
      audio = np.stack([audio, 0.5 * audio], 1)  # stereo
    ext = (".wav", ".flac", ".ogg")[i % 3]
    path = os.path.join(root, f"set{i % 2}", f"take{i}{ext}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, audio, rate)
    paths.append(path)
  return paths


def test_the_split_is_a_stable_hash_of_the_relative_path_and_never_empty(tmp_path):
  rels = [f"a/{i}.wav" for i in range(200)]
  split = folder.split_of(rels)
  test = [r for r in rels if split[r] == "test"]
  assert 2 <= len(test) <= 20  # about 5 %
  # Adding files moves none of the others, and the order given does not matter.
  more = folder.split_of(rels[::-1] + [f"b/{i}.wav" for i in range(50)])
  assert all(more[r] == split[r] for r in rels)
  # A handful of files whose hashes all say train still gets one test file.
  few = [r for r in rels if split[r] == "train"][:3]
  assert sorted(folder.split_of(few).values()) == ["test", "train", "train"]


def test_folder_source_reads_any_format_rate_and_channels(tmp_path):
  _write_folder(str(tmp_path / "rec"))
  cfg = type("D", (), {"name": "folder", "root": str(tmp_path / "rec"),
                       "cache_dir": str(tmp_path / "cache")})()
  train = data.make_source(cfg, sample_rate=SR, split="train")
  test = data.make_source(cfg, sample_rate=SR, split="test")
  assert len(train) + len(test) == 6 and len(test) >= 1
  assert not set(train.names) & set(test.names)
  audio = train.audio(0)
  assert audio.dtype == np.float32 and audio.ndim == 1
  assert abs(audio.shape[0] - int(1.5 * SR)) <= 2  # resampled to 22050 Hz, mono


def test_caching_a_folder_shows_files_and_minutes(tmp_path, capsys):
  """Training on a new folder decodes every recording first (minutes for long ones): a bar says
  how many files and how many minutes of audio are ready, instead of silence."""
  _write_folder(str(tmp_path / "rec"), n_files=4, seconds=30)
  source = folder.make_source(str(tmp_path / "rec"), sample_rate=SR, split="train",
                              cache_dir=str(tmp_path / "cache"))
  seconds = source.warm_cache(show_progress=True)
  err = capsys.readouterr().err
  assert seconds == pytest.approx(30 * len(source), abs=0.01)
  assert "caching audio" in err and f"{len(source)}/{len(source)}" in err
  assert f"{seconds / 60:.1f} min ready" in err
  assert source.decode_count == len(source)
  source.warm_cache()  # cached now: nothing decoded again, nothing drawn
  assert source.decode_count == len(source) and capsys.readouterr().err == ""


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such folder"),
    (lambda p: os.makedirs(p), "holds 0 audio file"),
    (lambda p: (os.makedirs(p), sf.write(os.path.join(p, "one.wav"), np.zeros(100), SR)),
     "at least two"),
])
def test_folder_source_refuses_an_unusable_root_in_one_line(tmp_path, make, message):
  root = str(tmp_path / "rec")
  make(root)
  cfg = type("D", (), {"name": "folder", "root": root, "cache_dir": str(tmp_path / "c")})()
  with pytest.raises(UserError, match=message):
    data.make_source(cfg, sample_rate=SR, split="train")


def test_augmentation_is_a_pure_function_of_seed_step_and_row(tmp_path):
  _write_folder(str(tmp_path / "rec"))
  cfg = type("D", (), {"name": "folder", "root": str(tmp_path / "rec"),
                       "cache_dir": str(tmp_path / "cache")})()
  source = data.make_source(cfg, sample_rate=SR, split="train")
  plain = data.SegmentSampler(source, 8192, seed=3)
  aug = data.SegmentSampler(source, 8192, seed=3, augment=True)
  batch = aug.batch(5, 8)
  np.testing.assert_array_equal(batch, aug.batch(5, 8))  # resume: the same audio again
  # Two processes loading halves see the rows one process sees.
  halves = np.concatenate([aug.batch(5, 8, 0, 2), aug.batch(5, 8, 1, 2)])
  np.testing.assert_array_equal(halves, batch)
  assert not np.array_equal(aug.batch(6, 8), batch)
  # Augmented windows differ from the plain ones but stay normalised like them.
  base = plain.batch(5, 8)
  changed = [not np.allclose(a, b, atol=1e-4) for a, b in zip(batch, base)]
  assert sum(changed) >= 5, changed
  np.testing.assert_allclose(np.abs(batch.max(-1)), 1.0, rtol=1e-5)


def test_each_augmentation_stage_does_what_it_says():
  rng_signal = np.random.default_rng(0)
  x_T = synthetic.note_sequence(16384, SR, seed=1).astype(np.float32)
  other_T = rng_signal.standard_normal(16384).astype(np.float32)

  class Forced:
    """A generator whose coins all come up for one stage; parameters drawn as usual."""
    def __init__(self, stage, seed=0):
      self.rng, self.stage, self.calls = np.random.default_rng(seed), stage, 0

    def random(self, size=None):
      if size is None:  # the coins, in CHAIN's order
        name = list(augment.CHAIN)[self.calls]
        self.calls += 1
        return 0.0 if name == self.stage else 1.0
      return self.rng.random(size)

    def standard_normal(self, n):
      return self.rng.standard_normal(n)

  def run(stage):
    return augment.augment_window(x_T, other_T, Forced(stage), SR)

  peak = x_T / np.abs(x_T).max()
  np.testing.assert_allclose(run("polarity"), -peak, atol=1e-6)
  # Mixing adds the second window (peak-normalised), at most 12 dB down.
  added = run("mix") - peak
  level = np.abs(added).max()
  np.testing.assert_allclose(added, other_T / np.abs(other_T).max() * level, atol=1e-5)
  assert 10**(-12 / 20) - 1e-6 <= level <= 1 + 1e-6
  # A room adds a tail after the last note: energy where the dry signal has decayed.
  tail = slice(12000, None)
  assert np.sum(run("room")[tail]**2) > 1.5 * np.sum(peak[tail]**2)
  # Noise raises the floor of a silent stretch from zero.
  quiet_T = np.concatenate([x_T[:8192], np.zeros(8192, np.float32)])
  noisy = augment.augment_window(quiet_T, other_T, Forced("noise"), SR)
  assert 0 < np.sqrt(np.mean(noisy[8192:]**2)) < 0.1
  # Equalisation changes the spectrum's shape, not only its level.
  eq = run("eq")
  spec_a, spec_b = np.abs(np.fft.rfft(peak)), np.abs(np.fft.rfft(eq))
  bands = [slice(10, 100), slice(300, 1000), slice(3000, 8000)]
  gains = [np.sum(spec_b[b]**2) / np.sum(spec_a[b]**2) for b in bands]
  assert max(gains) / min(gains) > 1.2, gains


def test_training_on_a_folder_with_augmentation_resumes_exactly(tiny_config, tmp_path):
  _write_folder(str(tmp_path / "rec"), n_files=8)
  cfg = tiny_config
  cfg.data.name = "folder"
  cfg.data.root = str(tmp_path / "rec")
  cfg.data.augment = True
  cfg.train.log_every = 1
  cfg.train.checkpoint_every = 2
  quiet = lambda *_: None
  cfg.train.num_steps = 3
  straight = str(tmp_path / "straight")
  training.train_and_evaluate(cfg, straight, log=quiet)
  stopped = str(tmp_path / "stopped")
  # A time limit of zero stops at the first logging step and saves a checkpoint there.
  messages = []
  training.train_and_evaluate(cfg, stopped, log=messages.append, stop_after_s=0.0)
  assert any("stopped at step 1 of 3" in m for m in messages), messages
  # Before the first step it said what it was doing with the folder (the files were cached by the
  # first run: nothing to decode, but the line is there).
  assert any("folder train split at" in m and "recording(s); decoding any not yet cached" in m
             for m in messages), messages
  assert sorted(os.listdir(os.path.join(stopped, "checkpoints"))) == ["1"]
  training.train_and_evaluate(cfg, stopped, log=quiet)  # the same command goes on
  rows = {}
  for run in (straight, stopped):
    with open(os.path.join(run, "metrics.jsonl")) as f:
      rows[run] = {r["step"]: r for r in map(json.loads, f)}
  assert sorted(rows[stopped]) == [1, 2, 3]
  for key in ("loss", "energy_loss", "g_grad_norm"):
    assert rows[straight][3][key] == rows[stopped][3][key], key
  # From the second report on, the host-measured step time is logged.
  assert "seconds_per_step" not in rows[straight][1]
  assert rows[straight][3]["seconds_per_step"] > 0


def test_gather_takes_excerpts_skips_excluded_files_and_reads_zip_archives(tmp_path):
  paths = _write_folder(str(tmp_path / "pkg"), n_files=6, seconds=3.0)
  archive = str(tmp_path / "music.pk3")
  with zipfile.ZipFile(archive, "w") as z:
    for p in paths[:2]:
      z.write(p, "sound/" + os.path.basename(p))
  sources = [gather.Source("pkg", str(tmp_path / "pkg"), minutes=0.1, seconds_per_file=2.0),
             gather.Source("zip", archive, minutes=1.0, seconds_per_file=1.0)]
  out = str(tmp_path / "out")
  minutes = gather.gather(out, sources, exclude={os.path.abspath(paths[0])},
                          show_progress=False)
  written = {os.path.relpath(os.path.join(d, f), out)
             for d, _, fs in os.walk(out) for f in fs}
  assert minutes["pkg"] == pytest.approx(0.1, abs=1 / 60)  # 6 s: three 2 s excerpts
  assert sum(w.startswith("pkg/") for w in written) == 3
  assert not any(os.path.basename(paths[0])[:-4] in w and w.startswith("pkg/") for w in written)
  assert sorted(w for w in written if w.startswith("zip/")) == [
      "zip/sound/take0.ogg", "zip/sound/take1.ogg"]
  for w in written:
    info = sf.info(os.path.join(out, w))
    assert info.samplerate == SR and info.channels == 1 and info.duration <= 2.0 + 1e-3
  # A second run adds nothing and reports the same minutes.
  assert gather.gather(out, sources, exclude={os.path.abspath(paths[0])},
                       show_progress=False) == minutes


def test_no_gathered_source_is_a_benchmark_voice_or_clip_folder_taken_whole():
  # The real-audio benchmark's speaker (Allison, whose voice also reads the Spanish prompts) is
  # never training data; its music folders are, only through the subset exclusion (gather()).
  sources = gather.default_sources() + gather.more_sources()
  assert len({s.name for s in sources}) == len(sources)
  for source in sources:
    assert "Allison" not in source.path and "/es" not in source.path, source
    assert source.minutes > 0 and source.seconds_per_file > 0
