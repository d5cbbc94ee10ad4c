"""The training loop: data-parallel over every device, checkpointed, resumable exactly.

Data parallelism is `jax.jit` with `NamedSharding` over a 1-D ('data',) mesh: the batch is split
along its first axis, the parameters and optimiser states are replicated, and XLA inserts the
gradient all-reduce.  On several hosts (Cloud TPU VM pods), `train.py --distributed` calls
`jax.distributed.initialize()` first, and each host loads only its own rows of the global batch.

Resuming is exact because everything a step depends on is in the checkpoint or a pure function of
the step number: parameters, both optimiser states and the RNG are saved, and the data sampler
draws the batch of step n from (seed, n) alone.
"""
import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sparse_jax import checkpoint, config, data, files, train_step
from sparse_jax import progress as progress_lib
from sparse_jax.errors import UserError


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D ('data',) mesh over `devices` (default: every device of every host)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), ("data",), devices=devices,
                       axis_types=(jax.sharding.AxisType.Explicit,))


def compile_step(cfg, graphs, mesh):
  """The jitted, sharded train step: batch split over 'data', state replicated and donated."""
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))

  def step(state, batch):
    return train_step.train_step(state, batch, graphs, cfg)

  return jax.jit(step, in_shardings=(replicated, batch_sharding),
                 out_shardings=(replicated, replicated), donate_argnums=0), batch_sharding


def rows_up_to(lines, step: int) -> list:
  """The metrics lines of steps <= `step`, in order; torn lines (a killed write) are dropped."""
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict) and row.get("step", step + 1) <= step:
      kept.append(line if line.endswith("\n") else line + "\n")
  return kept


class MetricWriter:
  """JSON lines in workdir/metrics.jsonl, and the same scalars for TensorBoard in
  workdir/tensorboard/ (tensorboardX: no TensorFlow), written by process 0 only."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tb_dir = os.path.join(workdir, "tensorboard")
    self.enabled = jax.process_index() == 0
    self._tb: Any = None  # a tensorboardX SummaryWriter, made on the first write
    self._purge_step: int | None = None

  def keep_up_to(self, step: int) -> None:
    """Drops the rows past `step`, which a run resumed from `step` computes (and logs) again."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = f.readlines()
    kept = rows_up_to(lines, step)
    # TensorBoard too hides its events past `step` of the run that is being resumed.
    self._purge_step = step + 1
    if kept == lines:
      return
    # Rewritten whole and renamed: a kill now leaves one file or the other.
    files.write_text(self.path, "".join(kept))

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    row = {"step": step, **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is None:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(self.tb_dir, purge_step=self._purge_step, flush_secs=30)
    for name, value in row.items():
      if name != "step":
        self._tb.add_scalar(f"train/{name}", value, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def metrics_line(step: int, last_step: int, metrics: dict) -> str:
  """The line logged every `train.log_every` steps (steps/s and the ETA are on the bar)."""
  return (f"step {step}/{last_step}  loss {metrics['loss']:.4g}  removed "
          f"{metrics['removed_fraction']:.3f}  rank {metrics['effective_rank']:.2f}")


def check_finite(step: int, metrics: dict) -> None:
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise UserError(f"training diverged at step {step}: non-finite {', '.join(sorted(bad))}; "
                    "lower optim.generator_lr or resume from the last checkpoint")


def past_deadline(started: float, stop_after_s: float | None) -> bool:
  """Whether a run that began at `started` (time.monotonic) has used its `stop_after_s`.

  On several processes, process 0's clock decides for all: they must stop at the same step.
  """
  if stop_after_s is None:
    return False
  late = time.monotonic() - started > stop_after_s
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    late = bool(multihost_utils.broadcast_one_to_all(np.asarray(late)))
  return late


def initial_generator(cfg, path: str):
  """The generator parameters of a trained model (an exported `.npz` or a workdir, read as the
  codec reads it), checked to fit `cfg.model`: where a warm start (`train.py --init_from`) begins.

  Returns:
    (g_params, the step they come from).

  Raises:
    UserError: missing, damaged, or a model of other shapes (naming the config fields that
      differ).
  """
  from sparse_jax import api
  if not os.path.exists(path):
    raise UserError(f"--init_from {path}: no such file or folder; pass an exported .npz "
                    "(sparse_jax/pretrained/model.npz is the shipped model) or a workdir")
  source = api.load_codec(path)
  _, abstract = train_step.abstract_generator(cfg)
  shapes = lambda tree: {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf
                         in jax.tree_util.tree_leaves_with_path(tree)}
  if shapes(abstract) != shapes(source.g_params):
    mine, theirs = cfg.model.to_dict(), source.cfg.model.to_dict()
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    raise UserError(f"--init_from {path}: its model has other shapes than this config's (model."
                    f"{', model.'.join(differ[:4]) or '?'} differ); pass the config it was "
                    "trained with (configs/pretrained.py for the shipped model)")
  return source.g_params, source.step


def train_and_evaluate(cfg, workdir: str, *, log=print, progress: bool = False,
                       stop_after_s: float | None = None, init_from: str | None = None) -> dict:
  """Trains `cfg` in `workdir` (resuming if it holds checkpoints).  Returns the last metrics.

  `progress`: a tqdm bar of the steps on stderr (process 0), with steps/s and the ETA.
  `stop_after_s`: checked at every logging step; once this many seconds have passed, save a
  checkpoint and return (a timed GPU slot or a preemptible VM ending); the same command goes on
  later.
  `init_from`: a trained model (an exported `.npz` or a workdir) whose generator a NEW run starts
  from (a warm start: continuing the shipped model, fine-tuning on one's own music).  Restored:
  the generator's parameters.  Not restored: the discriminator, both Adam states, the step count
  and the data position (they start afresh, so the step counts from 0).  The start is saved as
  checkpoint 0 at once; a workdir that already holds checkpoints resumes from them and ignores it.
  """
  started = time.monotonic()
  config.validate(cfg)
  # Read and checked before any other work, so a bad model creates nothing in the workdir.
  initial = None if init_from is None else initial_generator(cfg, init_from)
  n_dev = jax.device_count()
  if cfg.train.batch_size % n_dev:
    raise UserError(f"bad config value: train.batch_size={cfg.train.batch_size} is not a "
                    f"multiple of the {n_dev} devices; set --config.train.batch_size="
                    f"{n_dev * max(1, cfg.train.batch_size // n_dev)}")
  source = data.make_source(cfg.data, sample_rate=cfg.model.sample_rate, split="train")
  log(f"{source.description}: {len(source)} recording(s); decoding any not yet cached into "
      f"{source.cache_dir}")
  seconds = source.warm_cache(show_progress=progress and jax.process_index() == 0)
  sampler = data.SegmentSampler(source, cfg.model.n_samples, cfg.seed,
                                augment=cfg.data.augment)
  mesh = make_mesh()
  ckpt = checkpoint.Checkpointer(workdir, keep=cfg.train.keep_checkpoints,
                                 every=cfg.train.checkpoint_every,
                                 sharding=NamedSharding(mesh, P()))
  start = 0
  found = None
  warm_start = False
  if ckpt.latest_step() is not None:
    # Restore into shapes only: initialising parameters that are overwritten at once costs tens
    # of seconds at full size.
    graphs, abstract = train_step.abstract_train_state(cfg)
    found = ckpt.restore_newest_good({"state": abstract, "data_step": np.zeros((), np.int64)},
                                     set_aside=True)
  if found is not None:
    _, restored, note = found
    state, start = restored["state"], int(restored["data_step"])
    log(f"{note}; resumed from step {start}" if note else
        f"resumed from step {start} in {workdir}")
    if init_from is not None:
      log(f"--init_from {init_from} ignored: {workdir} already holds checkpoints (resumed)")
  else:
    graphs, state = train_step.create_train_state(cfg)
    if initial is not None:
      g_params, source_step = initial
      log(f"starting from the generator of {init_from} (its step {source_step}); the "
          "discriminator and both optimisers start afresh")
      state = dataclasses.replace(state, g_params=jax.tree.map(
          lambda new, old: jnp.asarray(new, old.dtype), g_params, state.g_params))
      warm_start = True
  if jax.process_index() == 0:
    # After the restore: a config whose checkpoints do not restore must not replace the one
    # that describes them.
    checkpoint.save_config(workdir, cfg)
  if warm_start:  # the start itself is a checkpoint: zero steps export the model it came from
    ckpt.save(0, {"state": state, "data_step": np.asarray(0, np.int64)}, force=True)
  writer = MetricWriter(workdir)
  writer.keep_up_to(start)
  if start >= cfg.train.num_steps:
    log(f"{workdir} is already trained to step {start}; raise --config.train.num_steps to go on")
    ckpt.close()
    return {}
  replicated = NamedSharding(mesh, P())
  state = jax.device_put(state, replicated)
  step_fn, batch_sharding = compile_step(cfg, graphs, mesh)
  log(f"training {cfg.train.num_steps} steps on {n_dev} {jax.devices()[0].platform} device(s), "
      f"{seconds / 3600:.2f} h of audio, batch {cfg.train.batch_size}")
  if jax.process_count() > 1:
    rows = cfg.train.batch_size // jax.process_count()
    first = jax.process_index() * rows
    log(f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} "
        f"local device(s), loads rows {first}-{first + rows - 1} of each global batch")

  def global_batch(step):
    local = sampler.batch(step, cfg.train.batch_size, jax.process_index(), jax.process_count())
    return jax.make_array_from_process_local_data(batch_sharding, local)

  pending = None  # (step, metrics on device): fetched after the next step is dispatched
  last = {}
  bar = progress_lib.bar(cfg.train.num_steps, "training", initial=start, unit="step",
                         enabled=progress and jax.process_index() == 0)
  clock: dict = {}  # (step, time) of the last report: the host-measured time per step between reports

  def report(step, metrics):
    now, (before, then) = time.monotonic(), clock.get("last", (None, None))
    clock["last"] = (step, now)
    # The first interval holds the compilation; from the second on it is the steady step time.
    extra = {} if before is None else {"seconds_per_step": (now - then) / max(step - before, 1)}
    return _report(step, metrics, writer, cfg, log, extra)
  end = cfg.train.num_steps
  with jax.set_mesh(mesh):
    for step in range(start, cfg.train.num_steps):
      state, metrics = step_fn(state, global_batch(step))
      bar.update(1)
      if step == start:  # the first call compiled the step: the ETA starts after it
        progress_lib.restart_clock(bar)
      if pending is not None:
        last = report(*pending)
      logging_step = (step + 1) % cfg.train.log_every == 0 or step + 1 == cfg.train.num_steps
      pending = (step + 1, metrics) if logging_step else None
      if logging_step and step + 1 < end and past_deadline(started, stop_after_s):
        end = step + 1
        break
      if (step + 1) % cfg.train.checkpoint_every == 0 and step + 1 < cfg.train.num_steps:
        if pending is not None:
          last = report(*pending)
          pending = None
        ckpt.save(step + 1, {"state": state, "data_step": np.asarray(step + 1, np.int64)})
    if pending is not None:
      last = report(*pending)
  bar.close()
  writer.close()
  ckpt.save(end, {"state": state, "data_step": np.asarray(end, np.int64)}, force=True)
  ckpt.close()
  if end < cfg.train.num_steps:
    log(f"stopped at step {end} of {cfg.train.num_steps} after "
        f"{(time.monotonic() - started) / 60:.1f} min (the time limit); rerun the same command "
        "to continue")
  return last


def _report(step, metrics, writer, cfg, log, extra):
  host = {k: float(v) for k, v in jax.device_get(metrics).items()}
  host.update(extra)
  check_finite(step, host)
  writer.write(step, host)
  log(metrics_line(step, cfg.train.num_steps, host))
  return host


def log_to_stderr(message: str) -> None:
  """A line on stderr that leaves the progress bar below it intact (tqdm.write)."""
  from tqdm import tqdm
  tqdm.write(message, file=sys.stderr)
  sys.stderr.flush()
