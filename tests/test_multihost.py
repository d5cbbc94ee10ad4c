"""Two processes on localhost, as on two hosts: train.py --coordinator_address/--num_processes/
--process_id with CPU collectives over gloo, against one process with the same global batch.

Each process gets 2 CPU devices, so the two together have the 4 devices this pytest process has
(conftest.py): the same mesh and the same per-device rows as the single-process reference.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparse_jax import checkpoint, data, losses, training

# Part of `make test` (CI), not of `make test-fast`: starts several training processes.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs train.py with SegmentSampler.batch wrapped: every call appends what this process loaded
# (the step, its rows' hashes and the files read) to $RECORD, and at step $KILL_AT_STEP the
# process waits for the file $KILL_AFTER (Orbax's mark of a committed checkpoint) and SIGKILLs
# itself, as a host that dies mid-run.
_WRAPPER = r"""
import hashlib, json, os, runpy, signal, sys, time
from sparse_jax.data import segments
record = os.environ["RECORD"]
kill_at = int(os.environ.get("KILL_AT_STEP", "-1"))
original = segments.SegmentSampler.batch

def batch(self, step, batch_size, process_index=0, process_count=1):
  if step == kill_at:
    deadline = time.time() + 120
    while not os.path.exists(os.environ["KILL_AFTER"]) and time.time() < deadline:
      time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)
  files, audio = [], self.source.audio
  self.source.audio = lambda i: files.append(int(i)) or audio(i)
  try:
    out = original(self, step, batch_size, process_index, process_count)
  finally:
    del self.source.audio
  with open(record, "a") as f:
    f.write(json.dumps({"step": int(step), "process": int(process_index), "files": files,
                        "rows": [hashlib.sha1(r.tobytes()).hexdigest() for r in out]}) + "\n")
  return out

segments.SegmentSampler.batch = batch
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path("train.py", run_name="__main__")
"""

STEPS = 4


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _configure(cfg, classical_tiny, tmp_path):
  """The ':tiny' config this test trains, and the same as train.py overrides.

  As in the 1-vs-4-device test (test_training.py): the paper objective (no discriminator, whose
  L1 loss's gradient is a sign that float rounding flips) and Adam's eps = 1, so that an update
  is proportional to its gradient and the comparison measures what the processes compute
  rather than Adam's amplification of rounding (eps = 1e-8 makes every update +-lr).
  """
  values = {"data.root": classical_tiny, "data.cache_dir": f"{tmp_path}/cache",
            "train.num_steps": STEPS, "train.log_every": 1, "train.checkpoint_every": 2,
            "loss.adversarial": False, "optim.eps": 1.0}
  for key, value in values.items():
    group, name = key.split(".")
    cfg[group][name] = value
  return [f"--config.{key}={value}" for key, value in values.items()]


def _launch(workdir, overrides, tmp_path, tag, kill_at=None):
  """Starts process 0 and 1 of a two-process run; returns the Popen objects and log paths."""
  port = _free_port()
  procs, logs = [], []
  for pid in range(2):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="2",
               JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               RECORD=str(tmp_path / f"{tag}_rows_{pid}.jsonl"))
    if kill_at is not None and pid == 1:
      env.update(KILL_AT_STEP=str(kill_at),
                 KILL_AFTER=os.path.join(workdir, "checkpoints", str(kill_at),
                                         "commit_success.txt"))
    log = tmp_path / f"{tag}_{pid}.log"
    with open(log, "w") as f:
      procs.append(subprocess.Popen(
          [sys.executable, "-c", _WRAPPER, "--config", "configs/musicnet.py:tiny",
           "--workdir", workdir, f"--coordinator_address=localhost:{port}",
           "--num_processes=2", f"--process_id={pid}", *overrides],
          cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=f))
    logs.append(log)
  return procs, logs


def _wait(procs, timeout):
  deadline = time.time() + timeout
  for p in procs:
    p.wait(timeout=max(1.0, deadline - time.time()))
  return [p.returncode for p in procs]


def _kill(procs):
  for p in procs:
    if p.poll() is None:
      p.kill()
      p.wait()


def _lines(log):
  return [line for line in log.read_text().splitlines() if not line.startswith("[Gloo]")]


def _records(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def _steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_two_processes_train_like_one_and_resume_after_one_dies(tiny_config, classical_tiny,
                                                                 tmp_path):
  start = time.time()
  cfg = tiny_config
  overrides = _configure(cfg, classical_tiny, tmp_path)
  workdir, reference = str(tmp_path / "two"), str(tmp_path / "reference")
  procs = []
  try:
    # Run 1: process 1 dies (SIGKILL) when it is about to load step 2's batch, once checkpoint 2,
    # written by both processes together, is committed.  Process 0 is then stuck in a collective
    # with a dead peer, as on a real pod; the job is restarted as a whole.
    procs, logs1 = _launch(workdir, overrides, tmp_path, "run1", kill_at=2)
    # Meanwhile the reference: this pytest process (4 devices), the same config and global batch
    # (while process 1 compiles, process 0 waits, so this costs little extra time).
    training.train_and_evaluate(cfg, reference, log=lambda *_: None)
    times = {"reference": time.time() - start}
    procs[1].wait(timeout=240)
    assert procs[1].returncode == -signal.SIGKILL, "\n".join(_lines(logs1[1])[-20:])
    _kill(procs)
    times["run 1"] = time.time() - start
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "2"))

    # Run 2: the same command resumes both processes from the checkpoint and finishes.
    procs, logs2 = _launch(workdir, overrides, tmp_path, "run2")
    codes = _wait(procs, timeout=240)
    times["run 2"] = time.time() - start - times["run 1"]
    assert codes == [0, 0], "\n".join(_lines(logs2[0])[-20:] + _lines(logs2[1])[-20:])
  finally:
    _kill(procs)
  print("two-process test, seconds:", {k: round(v, 1) for k, v in times.items()})

  out0, out1 = _lines(logs2[0]), _lines(logs2[1])
  assert any("resumed from step 2" in line for line in out0), out0
  assert "process 0 of 2: 2 local device(s), loads rows 0-1 of each global batch" in out0, out0
  assert "process 1 of 2: 2 local device(s), loads rows 2-3 of each global batch" in out1, out1
  # Both processes log the same losses, step for step.
  step_lines = lambda out: [line.split("  ")[:3] for line in out if line.startswith("step ")]
  assert step_lines(out0) == step_lines(out1) and len(step_lines(out0)) == STEPS - 2

  # Only process 0 writes metrics, the rows computed again after the restart are not kept twice,
  # and every step matches the single process's.
  ref_rows, rows = _steps(reference), _steps(workdir)
  assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
  source = data.make_source(cfg.data, sample_rate=cfg.model.sample_rate, split="train")
  sampler = data.SegmentSampler(source, cfg.model.n_samples, cfg.seed)
  for ref, got in zip(ref_rows, rows):
    # seconds_per_step is the host's clock, absent from the first row a process reports.
    timing = {"seconds_per_step"}
    assert sorted(set(got) - timing) == sorted(set(ref) - timing)
    for key in ("g_grad_norm", "removed_fraction"):
      np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-6,
                                 err_msg=f"{key} at step {ref['step']}")
    # The loss is ||T - S||_1 - ||T||_1, two sums of ~1e3 whose difference is ~0.1: gloo's
    # reduction order moves it by float32 rounding of the sums, so compare on their scale.
    batch = sampler.batch(ref["step"] - 1, cfg.train.batch_size)
    scale = float(losses.weighted_target_spec(jnp.asarray(batch), cfg.model,
                                              cfg.loss.ramp_exponent).sum())
    for key in ("loss", "energy_loss"):
      np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-5 * scale,
                                 err_msg=f"{key} at step {ref['step']}")

  # Each process loaded exactly its half of each global batch, and only those rows' files.
  for pid in range(2):
    seen = _records(tmp_path / f"run1_rows_{pid}.jsonl") + _records(
        tmp_path / f"run2_rows_{pid}.jsonl")
    assert sorted({r["step"] for r in seen}) == list(range(STEPS)), seen
    for r in seen:
      assert r["process"] == pid
      full = sampler.batch(r["step"], cfg.train.batch_size)
      mine = slice(2 * pid, 2 * pid + 2)
      assert r["rows"] == [hashlib.sha1(row.tobytes()).hexdigest() for row in full[mine]]
      files, _ = sampler.choices(r["step"], cfg.train.batch_size)
      assert sorted(r["files"]) == sorted(int(i) for i in files[mine])

  # The checkpoint the two processes wrote together restores in this single process.
  _, _, state, extra = checkpoint.restore_train_state(workdir)
  _, _, ref_state, _ = checkpoint.restore_train_state(reference)
  assert int(state.step) == STEPS and extra["data_step"] == STEPS
  for a, b in zip(jax.tree.leaves(state.g_params), jax.tree.leaves(ref_state.g_params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
