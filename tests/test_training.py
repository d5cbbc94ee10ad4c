"""Training: data parallelism is exact, resuming is exact, and train.py -> eval.py end to end."""
import json
import os
import shutil
import struct
import subprocess
import sys

import codec_fixtures
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from sparse_jax import checkpoint, losses, train_step, training
from sparse_jax.errors import UserError

# In `make test` (CI), not in `make test-fast`: trains the tiny model (subprocesses, resumes).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_one_and_four_devices_give_the_same_step(tiny_config):
  cfg = tiny_config
  # Adam's first update is lr * g / (|g| + eps): with the paper's eps = 1e-8 every non-zero
  # gradient element becomes +-lr, so float32 rounding differences between a 4-example matmul on
  # one device and four 1-example matmuls (which legitimately differ at ~1e-7 relative, more on
  # elements that are sums of cancelling terms) can move a parameter by up to 2 lr.  With eps = 1
  # the update is ~lr * g, proportional to the gradient, so the comparison measures what data
  # parallelism computes (the all-reduced gradient) rather than Adam's sign amplification.
  cfg.optim.eps = 1.0
  # The paper's objective (no discriminator): at init the discriminator's logits are ~1e-5 and its
  # L1 loss's gradient is their sign, which rounding flips between layouts, so a 1e-5 comparison
  # of its parameters would test rounding, not parallelism.
  cfg.loss.adversarial = False
  assert jax.device_count() == 4
  graphs, state = train_step.create_train_state(cfg)
  batch = np.random.default_rng(0).standard_normal((4, cfg.model.n_samples)).astype(np.float32)
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = training.make_mesh(devices)
    step, batch_sharding = training.compile_step(cfg, graphs, mesh)
    with jax.set_mesh(mesh):
      fresh = jax.tree.map(lambda x: jnp.array(x, copy=True), state)  # the step donates its input
      s = jax.device_put(fresh, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
      new_state, metrics = step(s, jax.device_put(batch, batch_sharding))
    results.append(jax.device_get((new_state.g_params, new_state.d_params, metrics)))
  (g1, d1, m1), (g4, d4, m4) = results
  # The energy loss is ||T - S||_1 - ||T||_1, two sums of ~1e3 whose difference is ~0.1 at init:
  # a different reduction order changes it by float32 rounding of the sums, so compare it on the
  # scale of the sums it is the difference of.
  scale = float(losses.weighted_target_spec(jnp.asarray(batch), cfg.model,
                                            cfg.loss.ramp_exponent).sum())
  for key in ("loss", "energy_loss"):
    np.testing.assert_allclose(m1[key], m4[key], rtol=0, atol=1e-5 * scale)
  np.testing.assert_allclose(m1["g_grad_norm"], m4["g_grad_norm"], rtol=1e-5)
  for a, b in zip(jax.tree.leaves((g1, d1)), jax.tree.leaves((g4, d4))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {row["step"]: row for row in map(json.loads, f)}


def test_resume_gives_exactly_the_uninterrupted_step(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.log_every = 1
  cfg.train.checkpoint_every = 2
  cfg.train.num_steps = 3
  quiet = lambda *_: None
  straight = str(tmp_path / "straight")
  training.train_and_evaluate(cfg, straight, log=quiet)
  stopped = str(tmp_path / "stopped")
  cfg.train.num_steps = 2
  training.train_and_evaluate(cfg, stopped, log=quiet)
  cfg.train.num_steps = 3
  training.train_and_evaluate(cfg, stopped, log=quiet)  # resumes from the step-2 checkpoint
  a, b = _losses(straight), _losses(stopped)
  assert sorted(b) == [1, 2, 3]
  for key in ("loss", "energy_loss", "d_loss", "g_grad_norm"):
    assert a[3][key] == b[3][key], key  # bit-exact: same params, optimiser, RNG and batch


def test_bad_config_values_give_one_line_errors(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.batch_size = 3
  with pytest.raises(UserError, match="multiple of the 4 devices"):
    training.train_and_evaluate(cfg, str(tmp_path / "w"))
  cfg.train.batch_size = 4
  cfg.loss.overshoot_weight = 0.5
  with pytest.raises(UserError, match=r"loss.overshoot_weight=0.5 must be >= 1"):
    training.train_and_evaluate(cfg, str(tmp_path / "w"))
  cfg.loss.overshoot_weight = 1.0
  cfg.model.exclusion_frames = 10  # 8 events, 128 frames: 7 of them may close 7 * 19 = 133
  with pytest.raises(UserError, match=r"model.exclusion_frames=10 must be >= 0 and leave"):
    training.train_and_evaluate(cfg, str(tmp_path / "w"))
  cfg.model.exclusion_frames = 0
  cfg.loss.trained_events = 9
  with pytest.raises(UserError, match=r"loss.trained_events=9 must be in \[0, model.n_events=8\]"):
    training.train_and_evaluate(cfg, str(tmp_path / "w"))
  cfg.loss.trained_events = 0
  cfg.model.hop = 100
  with pytest.raises(UserError, match="model.window=256 must be a multiple of model.hop=100"):
    training.train_and_evaluate(cfg, str(tmp_path / "w"))


def test_nan_stops_training_with_the_step_named():
  with pytest.raises(UserError, match="diverged at step 7: non-finite loss"):
    training.check_finite(7, {"loss": float("nan"), "energy_loss": 1.0})


def _run(args, env_extra=None):
  env = dict(os.environ, PYTHONPATH=ROOT, **(env_extra or {}))
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)


def test_train_then_eval_end_to_end(classical_tiny, tmp_path):
  workdir = str(tmp_path / "run")
  overrides = [f"--config.data.root={classical_tiny}", f"--config.data.cache_dir={tmp_path}/c",
               "--config.train.num_steps=3", "--config.train.batch_size=2",
               "--config.model.n_events=32", "--config.train.eval_clips=2"]
  proc = _run(["train.py", "--config", "configs/musicnet.py:tiny", "--workdir", workdir,
               *overrides])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.isfile(os.path.join(workdir, "config.json"))
  proc = _run(["eval.py", "--workdir", workdir, "--clips", "2"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    report = json.load(f)
  assert report["step"] == 3
  for res in report["results"].values():
    curve = res["sum_of_event_spectrograms"]
    assert len(curve) == 32 and len(res["spectrogram_of_summed_audio"]) == 32
    assert all(np.isfinite(curve)) and all(c <= 1.0 for c in curve)
    # What was over-subtracted is part of what is left: 0 <= it <= 1 - removed, never falling.
    over = np.asarray(res["over_subtracted"])
    assert len(over) == 32 and np.all(over >= 0) and np.all(np.diff(over) >= -1e-6)
    assert np.all(over <= 1.0 - np.asarray(curve) + 1e-6)
    assert np.isfinite(res["mr_stft"]) and np.isfinite(res["log_mel"])
  assert os.path.getsize(os.path.join(workdir, "eval", "curve.png")) > 1000
  # TensorBoard: the training scalars, the evaluation's figures and two clips' audio.
  assert list(_tensorboard_scalars(os.path.join(workdir, "tensorboard"), "train/loss")) == [3]
  assert list(_tensorboard_scalars(os.path.join(workdir, "tensorboard"), "eval/mr_stft")) == [3]
  audio = _tensorboard_audio(os.path.join(workdir, "tensorboard"))
  assert sorted(audio) == ["eval/clip_0/original", "eval/clip_0/reconstruction",
                           "eval/clip_1/original", "eval/clip_1/reconstruction"]


def test_eval_on_a_missing_workdir_is_one_line(tmp_path):
  proc = _run(["eval.py", "--workdir", str(tmp_path / "nothing")])
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: no trained model"), proc.stderr


def test_train_with_a_bad_override_is_one_line(tmp_path):
  proc = _run(["train.py", "--config", "configs/musicnet.py:tiny", "--workdir",
               str(tmp_path / "w"), "--config.model.hop=100"])
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: bad config value"), proc.stderr
  assert len(lines) == 1, proc.stderr


def _quiet(*_):
  pass


def _metric_steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f]


def _steps_in(folder):
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def _damage(checkpoint_dir):
  """Truncates the largest file of one checkpoint (its array data) to half, as a cut-short copy."""
  paths = [os.path.join(folder, name) for folder, _, names in os.walk(checkpoint_dir)
           for name in names]
  largest = max(paths, key=os.path.getsize)
  os.truncate(largest, os.path.getsize(largest) // 2)


def test_resume_drops_the_metrics_rows_it_computes_again(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.log_every = 1
  cfg.train.checkpoint_every = 2
  cfg.train.num_steps = 3
  workdir = str(tmp_path / "run")
  training.train_and_evaluate(cfg, workdir, log=_quiet)
  # Killed after logging step 3 but before its checkpoint was written: resuming from step 2
  # computes step 3 again, and metrics.jsonl must hold it once.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "3"))
  cfg.train.num_steps = 4
  training.train_and_evaluate(cfg, workdir, log=_quiet)
  assert _metric_steps(workdir) == [1, 2, 3, 4]
  # The same scalars for TensorBoard, step 3 once: the resumed run purges the first run's.
  loss = _tensorboard_scalars(os.path.join(workdir, "tensorboard"), "train/loss")
  assert sorted(loss) == [1, 2, 3, 4]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [loss[r["step"]] for r in rows] == pytest.approx([r["loss"] for r in rows])


def _tensorboard_events(folder):
  from tensorboardX.proto import event_pb2
  for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name), "rb") as f:
      data = f.read()
    pos = 0
    while pos < len(data):  # TFRecords: u64 length, u32 crc, the event, u32 crc
      (n,) = struct.unpack_from("<Q", data, pos)
      yield event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
      pos += 16 + n


def _tensorboard_audio(folder):
  return {value.tag for event in _tensorboard_events(folder) for value in event.summary.value
          if value.HasField("audio")}


def _tensorboard_scalars(folder, tag):
  """{step: value} of a tag as TensorBoard shows it: event files in order, a session START at
  step T hiding the earlier files' steps >= T (a resumed run's purge)."""
  from tensorboardX.proto import event_pb2
  values = {}
  for event in _tensorboard_events(folder):
    if event.session_log.status == event_pb2.SessionLog.START:
      values = {k: v for k, v in values.items() if k < event.step}
    for value in event.summary.value:
      if value.tag == tag:
        values[event.step] = value.simple_value
  return values


def test_a_damaged_newest_checkpoint_is_set_aside_and_training_goes_on(tiny_config, tmp_path):
  cfg = tiny_config
  cfg.train.log_every = 1
  cfg.train.checkpoint_every = 2
  cfg.train.num_steps = 3
  workdir = str(tmp_path / "run")
  training.train_and_evaluate(cfg, workdir, log=_quiet)  # checkpoints 2 and 3
  ckpt_dir = os.path.join(workdir, "checkpoints")
  _damage(os.path.join(ckpt_dir, "3"))
  cfg.train.num_steps = 4
  lines = []
  training.train_and_evaluate(cfg, workdir, log=lines.append)
  damaged = [line for line in lines if "damaged" in line and "checkpoint" in line]
  assert len(damaged) == 1, lines
  assert "checkpoint 3" in damaged[0] and "step 2" in damaged[0], damaged
  assert "\n" not in damaged[0] and "bound method" not in damaged[0], damaged
  # Kept for inspection, out of orbax's sight; the run went on from step 2.
  aside = os.path.join(workdir, "checkpoints_damaged")
  assert os.listdir(aside) == ["3"]
  assert _steps_in(ckpt_dir) == [2, 4]
  assert _metric_steps(workdir) == [1, 2, 3, 4]
  # When no checkpoint restores (all damaged, or another config's): one line, nothing moved.
  for step in (2, 4):
    _damage(os.path.join(ckpt_dir, str(step)))
  cfg.train.num_steps = 5
  with pytest.raises(UserError, match="no checkpoint in .* restores") as err:
    training.train_and_evaluate(cfg, workdir, log=_quiet)
  assert "\n" not in str(err.value) and "bound method" not in str(err.value)
  assert _steps_in(ckpt_dir) == [2, 4] and os.listdir(aside) == ["3"]


def _two_checkpoints(cfg, workdir):
  """An untrained model saved as checkpoints 0 and 10 of `workdir` (no training compiled)."""
  codec_fixtures.save_untrained_workdir(workdir, cfg)
  _, abstract = train_step.abstract_train_state(cfg)
  ckpt = checkpoint.Checkpointer(workdir)
  tree = ckpt.restore({"state": abstract, "data_step": np.zeros((), np.int64)}, 0)
  ckpt.save(10, {"state": tree["state"], "data_step": np.asarray(10, np.int64)}, force=True)
  ckpt.close()


def test_eval_and_encode_on_a_damaged_newest_checkpoint(tiny_config, tmp_path):
  workdir = str(tmp_path / "run")
  _two_checkpoints(tiny_config, workdir)
  _damage(os.path.join(workdir, "checkpoints", "10"))
  proc = _run(["eval.py", "--workdir", workdir, "--clips", "1", "--nocompare_untrained",
               "--at_onsets"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    assert json.load(f)["events_at_onsets"]  # scored with the onset rule, as asked
  assert "Traceback" not in proc.stderr and "bound method" not in proc.stderr, proc.stderr[-3000:]
  damaged = [line for line in proc.stderr.splitlines() if "damaged" in line]
  assert len(damaged) == 1 and "checkpoint 10" in damaged[0] and "step 0" in damaged[0], damaged
  # The codec names its model by checkpoint, so it refuses (in one clean line) to swap models.
  wav = str(tmp_path / "a.wav")
  sf.write(wav, np.zeros(4096, np.float32), tiny_config.model.sample_rate)
  proc = _run(["-m", "sparse_jax", "encode", wav, str(tmp_path / "a.sjx"), "--workdir", workdir])
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: checkpoint 10"), proc.stderr[-3000:]
  assert "damaged" in lines[0] and "bound method" not in lines[0], lines


def test_a_misspelt_config_override_is_one_line_with_a_suggestion(tmp_path):
  for override in ("--config.trian.batch_size=2", "--config.train.bach_size=2"):
    proc = _run(["train.py", "--config", "configs/musicnet.py:tiny", override, "--workdir",
                 str(tmp_path / "w")])
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "did you mean train.batch_size?" in lines[0], lines
  assert not os.path.exists(tmp_path / "w")


def test_a_batch_of_one_trains_as_its_duplicate(tiny_config):
  # A batch of one window on one device once failed to trace: the encoder's pick of the chosen
  # frame used take_along_axis, whose size-1 batch axis explicit sharding cannot place.  The
  # same window twice must give twice the loss (a sum over the batch) and twice the gradient.
  cfg = tiny_config
  cfg.loss.adversarial = False
  cfg.loss.diversity_weight = 0.0   # it compares the batch's events with each other
  graphs, state = train_step.create_train_state(cfg)
  window = np.random.default_rng(1).standard_normal((1, cfg.model.n_samples)).astype(np.float32)
  mesh = training.make_mesh(jax.devices()[:1])
  step, batch_sharding = training.compile_step(cfg, graphs, mesh)
  results = []
  for batch in (window, np.concatenate([window, window])):
    with jax.set_mesh(mesh):
      fresh = jax.tree.map(lambda x: jnp.array(x, copy=True), state)
      _, metrics = step(fresh, jax.device_put(batch, batch_sharding))
    results.append(jax.device_get(metrics))
  one, two = results
  assert np.isfinite(one["loss"]) and one["g_grad_norm"] > 0, one
  np.testing.assert_allclose(two["loss"], 2 * one["loss"], rtol=1e-5)
  np.testing.assert_allclose(two["g_grad_norm"], 2 * one["g_grad_norm"], rtol=1e-4)
  np.testing.assert_allclose(two["removed_fraction"], one["removed_fraction"], rtol=1e-5)


def test_asyncio_reports_of_abandoned_orbax_reads_are_dropped_while_a_restore_fails(monkeypatch):
  """A damaged checkpoint's reads fail in Orbax's threads; asyncio then reports each abandoned
  task or future with its traceback.  After the one-line error those reports are noise (a CI run
  printed a future's); anything else asyncio says passes."""
  import logging
  namespace = {}
  exec(compile("def read():\n  raise ValueError('Requested byte range is not valid')\n",
               os.path.join("site-packages", "orbax", "serialization.py"), "exec"), namespace)
  try:
    namespace["read"]()
  except ValueError as e:
    orbax_error = e
  other_error = ValueError("something of the user's")

  def record(message, exc):
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None,
                             (type(exc), exc, exc.__traceback__))

  future = "Future exception was never retrieved\nfuture: <Future finished exception=...>"
  task = "Task exception was never retrieved\nfuture: <Task coro=<read() .../orbax/...>>"
  keep = checkpoint._AbandonedTaskFilter().filter
  monkeypatch.setattr(checkpoint, "_restoring", False)
  monkeypatch.setattr(checkpoint, "_restore_failed", False)
  assert keep(record(future, orbax_error))  # no restore failing: nothing is dropped
  monkeypatch.setattr(checkpoint, "_restore_failed", True)
  assert not keep(record(future, orbax_error))
  assert not keep(record(task, other_error))
  assert keep(record(future, other_error))
  assert keep(record("Unclosed client session", orbax_error))


def _same(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
             zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_a_warm_start_begins_at_the_given_generator_and_trains_it(tiny_config, tmp_path):
  from sparse_jax import checkpoint, generator, train_step
  cfg = tiny_config
  cfg.train.num_steps = 1
  # A "trained" model: another seed's generator, exported.
  _, source = train_step.create_train_state(cfg, seed=5)
  path = str(tmp_path / "source.npz")
  generator.save(path, cfg, source.g_params, bytes(16), step=7)
  said = []
  workdir = str(tmp_path / "warm")
  training.train_and_evaluate(cfg, workdir, log=said.append, init_from=path)
  assert any("starting from the generator of" in s for s in said)
  start = checkpoint.restore_generator(workdir, step=0)[2]
  assert _same(start, source.g_params)  # checkpoint 0 is the model it came from
  trained = checkpoint.restore_generator(workdir, step=1)[2]
  assert not _same(trained, source.g_params)  # one step moved it
  # Rerun: the workdir resumes, the warm start is not applied again.
  cfg.train.num_steps = 2
  said.clear()
  training.train_and_evaluate(cfg, workdir, log=said.append, init_from=path)
  assert any("ignored" in s for s in said) and checkpoint.Checkpointer(workdir).latest_step() == 2
  # A model of other shapes is refused in one line naming what differs.
  from sparse_jax import pretrained
  with pytest.raises(UserError, match=r"other shapes .*model\..*configs/pretrained.py"):
    training.train_and_evaluate(cfg, str(tmp_path / "other"), init_from=pretrained.MODEL_PATH)
  with pytest.raises(UserError, match="no such file or folder"):
    training.train_and_evaluate(cfg, str(tmp_path / "other"), init_from=str(tmp_path / "nope"))
  assert not os.path.exists(tmp_path / "other")  # refused before anything is written


def test_the_shipped_model_warm_starts_unchanged(tmp_path):
  """Zero steps from the shipped model give it back: what the warm start puts in checkpoint 0
  (checked above on a small model) is the shipped generator, array for array."""
  from configs import pretrained as pretrained_config
  from sparse_jax import generator, pretrained
  cfg = pretrained_config.get_config()
  start, _ = training.initial_generator(cfg, pretrained.MODEL_PATH)
  out = str(tmp_path / "again.npz")
  generator.save(out, cfg, start, bytes(16), step=0, dtype=np.float16)  # as the shipped file
  assert _same(generator.load(out)[2], generator.load(pretrained.MODEL_PATH)[2])
