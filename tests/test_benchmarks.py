"""benchmarks/speed.py and benchmarks/quality.py: their smoke runs (--quick) and their numerics.

The smoke runs go through a subprocess each, as a user would run them; they inherit conftest's
XLA flags and compilation cache, so a second run of the suite compiles nothing.
"""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import cost, quality
from sparse_jax import metrics

# Part of `make test` (CI), not of `make test-fast`: runs the benchmarks end to end.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
  # As the README runs them: `python -m benchmarks.X` from the repository's root.
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _assert_finite_numbers(tree, where="report"):
  """Every number in a JSON tree is finite (None stands for 'not measured' and is allowed)."""
  if isinstance(tree, dict):
    for k, v in tree.items():
      _assert_finite_numbers(v, f"{where}.{k}")
  elif isinstance(tree, list):
    for i, v in enumerate(tree):
      _assert_finite_numbers(v, f"{where}[{i}]")
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    assert math.isfinite(tree), where


# ------------------------------------------------------------------------------------------------
# speed.py


def test_xla_counts_a_scan_body_once_and_the_correction_restores_it():
  n, steps = 64, 6

  def program(x, w, n_steps):
    return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=n_steps)[0]

  x = jnp.ones((n, n))
  per_step = 2 * n**3  # the matmul; tanh adds n^2 per step
  lowered = jax.jit(lambda x, w: program(x, w, steps)).lower(x, x)
  raw = cost.flops_of(lowered.compile().cost_analysis())
  assert raw == pytest.approx(per_step, rel=0.05)  # one step's worth, not six
  out = cost.corrected_flops(
      lambda e: jax.jit(lambda x, w: program(x, w, e)).lower(x, x), steps,
      cost.flops_of(lowered.cost_analysis()))
  assert out["per_event"] == pytest.approx(per_step, rel=0.05)
  assert out["corrected"] == pytest.approx(steps * per_step, rel=0.05)
  assert out["loop_counted_once_ratio"] == pytest.approx(1.0, rel=0.05)
  assert jax.lax.scan is not None and "unroll" not in getattr(jax.lax.scan, "keywords", {})


def test_speed_quick_writes_a_complete_report(tmp_path):
  out = tmp_path / "speed.json"
  proc = _run(["-m", "benchmarks.speed", "--quick", "--out", str(out)])
  assert "| forward" in proc.stdout and "| train step" in proc.stdout
  report = json.loads(out.read_text())
  _assert_finite_numbers(report)
  assert (tmp_path / "speed.md").read_text().startswith("Config `configs/musicnet.py:tiny`")
  m = report["machine"]
  for key in ("platform", "device_kind", "cpu_model", "usable_cores", "jax",
              "load_average_before", "load_average_after"):
    assert key in m, key
  assert report["peak"]["peak_flop_per_s"] > 1e8
  for name in ("forward", "train_step"):
    r = report[name]
    assert r["lower_s"] > 0 and r["compile_s"] > 0
    assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
    assert r["achieved_flop_per_s"] > 0 and 0 < r["fraction_of_peak"] < 10
    if m["platform"] == "cpu":
      assert r["peak_rss_total_bytes"] >= r["peak_rss_run_bytes"] > 50e6
    f = r["flops"]
    # XLA sees the removal loop's body once: the raw count is one step plus the rest.
    assert f["loop_counted_once_ratio"] == pytest.approx(1.0, abs=0.1)
    assert f["corrected"] == pytest.approx(
        f["unrolled_1"] + (r["n_events"] - 1) * f["per_event"], rel=1e-9)
    assert f["corrected"] > 0.7 * r["n_events"] * f["per_event"]
  fwd = report["forward"]["flops"]
  parts = fwd["components_per_step"]
  # One event of the forward = the encoder + the decoder + the STFT of the event.
  assert fwd["per_event"] == pytest.approx(sum(parts.values()), rel=0.1)
  # The encoder's matmuls are nearly all of its work.
  assert fwd["encoder_hand_count_per_step"]["total"] == pytest.approx(parts["encoder"], rel=0.1)
  # A train step at batch 2: forward, remat forward and backward of two windows.
  ratio = report["train_step"]["flops"]["per_event"] / fwd["per_event"]
  assert 3 < ratio < 16
  assert report["train_step"]["metrics_finite"]


# ------------------------------------------------------------------------------------------------
# quality.py


def test_events_per_second_matches_the_window_layout():
  from configs import musicnet, quickstart
  assert quality.events_per_second(musicnet.get_config().model) == pytest.approx(32 * 22050 / 2**16)
  from sparse_jax.baselines import matching_pursuit
  assert quality.events_per_second(musicnet.get_config().model) == pytest.approx(
      matching_pursuit.CODEC_EVENTS_PER_SECOND)
  assert quality.events_per_second(quickstart.get_config().model) == pytest.approx(
      32 * 22050 / 2**14)


def test_spectral_residual_of_known_splits():
  rng = np.random.default_rng(0)
  window_T = rng.standard_normal(4096)
  half = (4096 // 64) // 2
  total = metrics.stft_magnitude(window_T, 256, 64)[:, :half].sum()
  # Two halves of the signal's amplitude: half the magnitude each, then all of it.
  r = quality.spectral_residual_l1(window_T, np.stack([0.5 * window_T, 0.5 * window_T]), 256, 64)
  np.testing.assert_allclose(r, [0.5 * total, 0.0], atol=1e-9 * total)
  # An event twice too loud over-removes: the residual is not clamped.
  r = quality.spectral_residual_l1(window_T, 2.0 * window_T[None], 256, 64)
  np.testing.assert_allclose(r, [total], rtol=1e-9)
  assert quality.spectral_explained(window_T, window_T, 256, 64) == pytest.approx(1.0)
  assert quality.spectral_explained(window_T, np.zeros(4096), 256, 64) == pytest.approx(0.0)


def test_matching_pursuit_curve_explains_a_sum_of_atoms():
  """Three dictionary atoms in the first half: MP finds them in three steps."""
  from configs import musicnet
  from sparse_jax.baselines import matching_pursuit as mp
  m = musicnet.get_config("tiny").model  # 2^14 samples, 8 events, window 256, hop 64
  atoms = np.zeros(3, mp.ATOM_DTYPE)
  atoms[:] = [(1024, 2048, 40, 1.0, 0.3), (1024, 4096, 100, 0.7, 1.0),
              (1024, 6144, 200, 0.5, 2.0)]
  clip_T = np.zeros(m.n_samples)
  clip_T[:m.n_samples // 2] = mp.render_atoms(atoms, m.n_samples // 2)
  curves = quality.mp_curves(clip_T, m)
  for key in ("sum_of_event_spectrograms", "spectrogram_of_summed_audio"):
    c = np.asarray(curves[key])
    assert c.shape == (m.n_events,)
    assert c[0] < 0.7 and c[2] > 0.97 and c[-1] > 0.97, (key, c)


@pytest.fixture(scope="module")
def tiny_workdir(classical_tiny, tmp_path_factory):
  """An untrained ':tiny' model saved as a training run would save it."""
  from configs import musicnet
  from sparse_jax import checkpoint, train_step
  cfg = musicnet.get_config("tiny")
  cfg.data.root = classical_tiny
  workdir = str(tmp_path_factory.mktemp("bench_run"))
  cfg.data.cache_dir = os.path.join(workdir, "audio_cache")
  checkpoint.save_config(workdir, cfg)
  _, state = train_step.create_train_state(cfg)
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(0, {"state": state, "data_step": np.zeros((), np.int64)}, force=True)
  ckpt.close()
  return workdir


def test_quality_quick_writes_tables_curves_and_a_figure(tiny_workdir, tmp_path):
  out = tmp_path / "quality"
  proc = _run(["-m", "benchmarks.quality", "--workdir", tiny_workdir, "--quick", "--out",
               str(out)])
  report = json.loads((out / "results.json").read_text())
  _assert_finite_numbers(report)
  table = (out / "results.md").read_text()
  assert table in proc.stdout
  assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  d = report["datasets"]["classical (embedded)"]
  assert d["n_clips"] == 2 and d["clip_seconds"] == pytest.approx(2**14 / 22050)
  for c in quality.CODECS:
    r = d["codecs"][c]
    assert r["label"] in table
    for key in ("kbps", "file_kbps", "mr_stft", "log_mel", "si_sdr", "explained",
                "realtime_factor"):
      assert key in r, (c, key)
    assert len(r["per_clip"]) == 2
  codecs = d["codecs"]
  # Our file rate is the stream rate plus the 55-byte header and the 4-byte CRC.
  extra_kbps = (55 + 4) * 8 / d["clip_seconds"] / 1000
  assert codecs["ours"]["file_kbps"] - codecs["ours"]["kbps"] == pytest.approx(extra_kbps)
  assert 4.0 < codecs["opus"]["kbps"] < 10.0 and 7.0 < codecs["mp3"]["kbps"] < 10.0
  assert codecs["mp"]["events_per_second"] == pytest.approx(d["events_per_second"], rel=0.1)
  assert codecs["mp_rate"]["kbps"] == pytest.approx(codecs["ours"]["kbps"], rel=0.25)
  for c in ("ours", "mp"):
    for curve in d["curves"][c].values():
      assert len(curve) == 8 and all(v <= 1.0 + 1e-6 for v in curve)
  # MP's curve removes energy step by step (atoms are projections: never worse than nothing).
  mp_sum = np.asarray(d["curves"]["mp"]["sum_of_event_spectrograms"])
  assert mp_sum[-1] > mp_sum[0] > 0


def test_quality_without_a_checkpoint_says_so_and_exits_2(tmp_path, capsys):
  assert quality.main(["--workdir", str(tmp_path), "--quick", "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1
  assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------
# quality.py --real


def _write_recordings(folder):
  """Generated 'recordings' in every format, rate and channel count the benchmark accepts, in
  nested folders, plus files it must pass over."""
  import soundfile as sf
  rng = np.random.default_rng(0)

  def tone(seconds, rate, channels, f0):
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * f0 * t) * np.exp(-2 * (t % 0.5)) + 0.01 * rng.normal(size=t.size)
    return np.repeat(mono[:, None], channels, 1)

  (folder / "a" / "b").mkdir(parents=True)
  sf.write(folder / "a" / "stereo44k.wav", tone(2.5, 44100, 2, 220), 44100)
  sf.write(folder / "a" / "b" / "mono16k.flac", tone(2.0, 16000, 1, 330), 16000)
  sf.write(folder / "b48k.ogg", tone(2.2, 48000, 2, 440), 48000)
  sf.write(folder / "short.mp3", tone(0.8, 22050, 1, 262), 22050, format="MP3")
  sf.write(folder / "a" / "hiss.wav", 1e-5 * rng.normal(size=(30000, 1)), 22050)  # -100 dBFS
  (folder / "notes.txt").write_text("not audio")
  (folder / "a" / "broken.wav").write_bytes(b"RIFF not really a wav")


def test_real_clip_choice_is_a_fixed_seeded_subset(tmp_path):
  _write_recordings(tmp_path)
  assert quality.find_recordings(str(tmp_path)) == [
      "a/b/mono16k.flac", "a/broken.wav", "a/hiss.wav", "a/stereo44k.wav", "b48k.ogg",
      "short.mp3"]
  clips = quality.choose_clips([str(tmp_path)], 10, 1.5)
  paths = [c["path"] for c in clips]
  # The broken and the near-silent files are left out; files long enough come first, the short
  # one is used whole.
  assert sorted(paths) == ["a/b/mono16k.flac", "a/stereo44k.wav", "b48k.ogg", "short.mp3"]
  assert paths[-1] == "short.mp3" and clips[-1]["seconds"] == pytest.approx(0.8, abs=0.01)
  for c in clips[:-1]:
    assert c["seconds"] == pytest.approx(1.5) and c["start_s"] >= 0
  # Same inputs, same clips; a new file changes no other clip, only where it sorts in.
  assert quality.choose_clips([str(tmp_path)], 10, 1.5) == clips
  import soundfile as sf
  sf.write(tmp_path / "a" / "new.wav", np.full((40000, 1), 0.1), 22050)
  again = [c for c in quality.choose_clips([str(tmp_path)], 10, 1.5) if c["path"] != "a/new.wav"]
  assert again == clips
  # Folders take turns.
  other = tmp_path / "a"
  turns = quality.choose_clips([str(tmp_path / "a" / "b"), str(tmp_path)], 3, 1.5)
  assert turns[0]["folder"] == str(other / "b") and turns[1]["folder"] == str(tmp_path)
  audio = quality.load_clip(clips[0], 22050)
  assert audio.ndim == 1 and audio.size == pytest.approx(1.5 * 22050, abs=2)


def test_mp_at_bitrate_fits_the_budget():
  rng = np.random.default_rng(1)
  clip = rng.normal(size=22050) * np.hanning(22050)
  r = quality.mp_at_bitrate(clip, 22050, 3.0)
  assert 2.6 < r["kbps"] <= 3.0
  assert r["decoded"].shape == clip.shape
  assert quality.spectral_explained(clip, r["decoded"], 2048, 256) > 0


def test_real_metrics_include_visqol():
  from sparse_jax import metrics
  if metrics.visqol_missing():
    pytest.skip(metrics.visqol_missing())
  t = np.arange(22050) / 22050
  clip = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)).astype(np.float64)
  same = quality.real_metrics(clip, clip, 22050, 1.0)
  silent = quality.real_metrics(clip, np.zeros_like(clip), 22050, 1.0)
  assert same["visqol"] > 4.0 and silent["visqol"] == 1.0
  assert same["explained"] == pytest.approx(1.0) and silent["explained"] == pytest.approx(0.0)
  assert quality.real_metrics(clip, clip, 22050, None)["visqol"] is None


def test_quality_real_quick_on_generated_recordings(tiny_workdir, tmp_path):
  """`--real DIR --quick` end to end on the untrained model: every codec, every metric, one figure
  per metric, ours never decodes worse than silence on any clip, and `--refine 2` adds a row that
  never decodes worse than the plain encode on any clip."""
  recordings = tmp_path / "recordings"
  _write_recordings(recordings)
  out = tmp_path / "real"
  proc = _run(["-m", "benchmarks.quality", "--workdir", tiny_workdir, "--real", str(recordings),
               "--quick", "--no-visqol", "--refine", "2", "--out", str(out)])
  report = json.loads((out / "results.json").read_text())
  _assert_finite_numbers(report)
  table = (out / "results.md").read_text()
  assert table in proc.stdout and "Command: `python -m benchmarks.quality" in table
  d = report["real"]
  assert len(d["clips"]) == 3 and d["event_counts"] == [2, 4] and d["visqol_seconds"] is None
  assert set(d["codecs"]) == {"ours_2", "ours_4", "ours_4_r2", "opus_6", "opus_8", "opus_12",
                              "mp3_8", "mp_rate", "silence", "input"}
  # The bounds: silence explains nothing, the input everything.
  silence, ceiling = d["codecs"].pop("silence"), d["codecs"].pop("input")
  assert silence["explained"] == pytest.approx(0.0) and ceiling["explained"] == pytest.approx(1.0)
  assert ceiling["log_mel"] == pytest.approx(0.0, abs=1e-9) and silence["log_mel"] > 0.1
  assert silence["label"] in table and ceiling["label"] in table and "median / worst" in table
  ours = d["codecs"]["ours_4"]
  explained = [row["explained"] for row in ours["per_clip"]]
  assert ours["explained_median"] == pytest.approx(np.median(explained))
  assert ours["explained_worst"] == pytest.approx(min(explained))
  assert ours["log_mel_worst"] == pytest.approx(max(row["log_mel"] for row in ours["per_clip"]))
  assert d["refine_steps"] == [2] and "--refine 2" in table
  for plain, refined in zip(d["codecs"]["ours_4"]["per_clip"], d["codecs"]["ours_4_r2"]["per_clip"]):
    assert refined["explained"] >= plain["explained"] - 1e-6
  for name, r in d["codecs"].items():
    assert r["label"] in table and len(r["per_clip"]) == 3
    for key in ("kbps", "file_kbps", "explained", "log_mel", "mr_stft", "si_sdr"):
      assert r[key] is not None, (name, key)
    assert r["visqol"] is None
  for name in ("ours_2", "ours_4"):
    assert d["codecs"][name]["explained_min"] >= 0.0
  assert d["codecs"]["opus_6"]["kbps"] < d["codecs"]["opus_12"]["kbps"]
  assert d["codecs"]["mp_rate"]["kbps"] <= d["codecs"]["ours_4"]["kbps"] + 1e-9
  for key in ("explained", "log_mel", "mr_stft", "si_sdr"):
    assert (out / f"real_{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not (out / "real_visqol.png").exists()


def test_quality_real_refuses_a_missing_folder(tmp_path, capsys):
  with pytest.raises(SystemExit):
    quality.parse_args(["--real", str(tmp_path / "nowhere")])
  assert "no such folder" in capsys.readouterr().err


def test_ablation_rows_of_a_workdir_and_of_a_screened_generator(tiny_workdir, tmp_path):
  # A training workdir and an exported generator evaluated into a folder (a GPU screen's models)
  # give the same figures, and the screen's row says it has no CPU minutes.
  from benchmarks import ablation
  from sparse_jax import evaluation, generator
  quiet = lambda m: None
  evaluation.evaluate(tiny_workdir, n_clips=2, compare_untrained=False, log=quiet)
  npz = str(tmp_path / "screened.npz")
  generator.export_workdir(tiny_workdir, npz, dtype=np.float32)
  evaluation.evaluate(npz, n_clips=2, compare_untrained=False, log=quiet,
                      out_dir=str(tmp_path / "eval" / "screened"))
  run, screened = ablation.row(tiny_workdir), ablation.row(str(tmp_path / "eval" / "screened"))
  # The same workdir evaluated on other clips into another folder: its own figures.
  evaluation.evaluate(tiny_workdir, n_clips=3, compare_untrained=False, log=quiet,
                      out_dir=os.path.join(tiny_workdir, "eval3"))
  three = ablation.row(tiny_workdir, "eval3")
  assert three["clips"] == 3 and run["clips"] == 2 and three["removed_sum"] != run["removed_sum"]
  assert run["minutes"] is not None and screened["minutes"] is None
  assert screened["variant"] == "screened" and screened["steps"] == run["steps"] == 0
  assert "--config.model.n_events=8" in screened["overrides"]  # tiny against the quickstart
  assert screened["overrides"] == run["overrides"]
  for key in ("removed_sum", "effective_rank", "stacked_share"):
    assert screened[key] == pytest.approx(run[key], rel=1e-5), key
  assert 0.0 <= screened["stacked_share"] < 1.0
  table = ablation.markdown([run, screened])
  assert "| n/a |" in table.splitlines()[-1]  # the screened row's minutes
  # A screen's folder whose model file is gone: that row is skipped with one line, no traceback.
  gone = tmp_path / "eval" / "gone"
  gone.mkdir()
  (gone / "metrics.json").write_text(json.dumps({"workdir": str(tmp_path / "missing.npz")}))
  proc = _run(["-m", "benchmarks.ablation", str(gone)])
  assert proc.returncode == 0 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines()[-1] == (f"skipping {gone}: not trained and evaluated (UserError: "
                                 f"{tmp_path / 'missing.npz'}: no such model file; pass an "
                                 "exported generator (.npz) or a training workdir)")


# promote.py


def test_promotion_needs_every_headline_figure_at_least_as_good_and_one_better():
  from benchmarks import promote
  shipped = {"explained": 0.30, "log_mel": 0.40, "visqol": 3.40}
  better = dict(shipped, explained=0.31)
  assert promote.verdict(better, shipped)[0]
  assert not promote.verdict(shipped, shipped)[0]  # no figure better
  mixed = dict(better, log_mel=0.41)  # log-mel is lower-better: 0.41 is worse
  ok, why = promote.verdict(mixed, shipped)
  assert not ok and "worse on log_mel" in why
  assert promote.verdict(dict(better, visqol=None), dict(shipped, visqol=None))[0]


def test_promote_scores_both_models_and_keeps_a_ledger(tiny_workdir, tmp_path):
  from benchmarks import promote
  from sparse_jax import generator, pretrained
  recordings = tmp_path / "recordings"
  _write_recordings(recordings)
  candidate = str(tmp_path / "candidate.npz")
  generator.export_workdir(tiny_workdir, candidate)
  ledger = tmp_path / "leases.md"
  shipped_bytes = open(pretrained.MODEL_PATH, "rb").read()
  assert promote.main([candidate, "--real", str(recordings), "--clips", "1", "--seconds", "1",
                       "--ledger", str(ledger), "--apply", "--note", "test"]) == 0
  text = ledger.read_text()
  assert text.startswith(promote.LEDGER_HEAD) and text.count("| test |") == 1
  # The untrained model explains less than the shipped one: kept, and the file is untouched.
  assert "kept the shipped model" in text
  assert open(pretrained.MODEL_PATH, "rb").read() == shipped_bytes


def test_encode_stages_counts_each_window_once_and_adds_up():
  import codec_fixtures

  from benchmarks import encode_stages
  codec = codec_fixtures.tiny_codec()
  audio = np.random.default_rng(0).normal(0, 0.1, 2 * codec.n_samples).astype(np.float32)
  result = encode_stages.measure(codec, audio)
  _, n_windows = codec.windows_for(audio.size)
  stages = result["stages"]
  assert stages["run_window"]["calls"] == n_windows  # the compiling window is not counted
  timed = sum(row["seconds"] for name, row in stages.items() if name != "other (host glue)")
  assert 0 < timed <= result["encode_seconds"]
  assert abs(sum(row["share"] for row in stages.values()) - 1) < 1e-9
  assert "| run_window |" in encode_stages.table(result)
  from sparse_jax.codec import gains
  # Every timed function is put back (the codec is shared by other tests).
  assert "run_window" not in vars(codec) and gains.fit_gains.__name__ == "fit_gains"
  assert gains.SafeScale.best_alpha.__name__ == "best_alpha"
