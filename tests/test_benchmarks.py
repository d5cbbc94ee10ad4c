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

from benchmarks import quality, speed
from sparse_jax import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args):
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
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
  raw = speed.flops_of(lowered.compile().cost_analysis())
  assert raw == pytest.approx(per_step, rel=0.05)  # one step's worth, not six
  out = speed.corrected_flops(
      lambda e: jax.jit(lambda x, w: program(x, w, e)).lower(x, x), steps,
      speed.flops_of(lowered.cost_analysis()))
  assert out["per_event"] == pytest.approx(per_step, rel=0.05)
  assert out["corrected"] == pytest.approx(steps * per_step, rel=0.05)
  assert out["loop_counted_once_ratio"] == pytest.approx(1.0, rel=0.05)
  assert jax.lax.scan is not None and "unroll" not in getattr(jax.lax.scan, "keywords", {})


def test_speed_quick_writes_a_complete_report(tmp_path):
  out = tmp_path / "speed.json"
  proc = _run(["benchmarks/speed.py", "--quick", "--out", str(out)])
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
  proc = _run(["benchmarks/quality.py", "--workdir", tiny_workdir, "--quick", "--out", str(out)])
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
  # Our file rate is the stream rate plus the 53-byte header and the 4-byte CRC.
  extra_kbps = (53 + 4) * 8 / d["clip_seconds"] / 1000
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
