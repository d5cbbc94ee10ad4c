"""Checkpoints: the only module that imports orbax.

A workdir holds `config.json` (everything needed to rebuild the model) and `checkpoints/<step>/`
written by an Orbax `CheckpointManager` with `StandardSave` / `StandardRestore`.  The saved tree
is the whole `TrainState` (step, both players' parameters and optimiser states, the RNG) plus the
data position, so a restarted run resumes exactly.

A checkpoint that no longer restores (a file cut short by a full disk or a killed copy) does not
end a run: training and evaluation fall back to the newest one that restores, and training moves
the damaged one to `checkpoints_damaged/<step>` (kept for inspection, out of Orbax's sight).
"""
import hashlib
import json
import logging
import os
import re
import sys
import traceback

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from sparse_jax import config, param_layout
from sparse_jax.errors import UserError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "checkpoints_damaged"

# What a damaged or foreign checkpoint raises underneath: missing files (OSError), TensorStore's
# byte-range and format errors and JSON errors (ValueError), missing tree keys (KeyError).
_DAMAGE_TYPES = (OSError, ValueError, KeyError, EOFError)


def save_config(workdir: str, cfg) -> None:
  from sparse_jax import files
  os.makedirs(workdir, exist_ok=True)
  files.write_text(os.path.join(workdir, CONFIG_FILE), cfg.to_json(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """A run's config.json, migrated (`config.from_dict`)."""
  return config.from_dict(load_config_dict(workdir))


def load_config_dict(workdir: str) -> dict:
  """A run's config.json as saved: what its model id is computed from."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f"no trained model in {workdir!r} ({CONFIG_FILE} missing): pass the workdir "
                    "of a training run (python train.py --config ... --workdir DIR)")
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is unreadable ({e}): retrain or restore the file") from None
  return data


def model_id(cfg, step: int) -> bytes:
  """16 bytes naming the model that encodes a file: config and training step.

  `cfg`: a ConfigDict, or the dict of a saved config.json as it was saved (not migrated: the
  fields `config.migrate` adds to an old run must not change the id its files carry).
  """
  data = cfg if isinstance(cfg, dict) else json.loads(cfg.to_json())
  text = json.dumps(data, sort_keys=True) + f"#step={int(step)}"
  return hashlib.sha256(text.encode()).digest()[:16]


def damage_reason(error: BaseException) -> str | None:
  """One clean line saying why a restore failed, or None if `error` is not about the files.

  Orbax wraps TensorStore's read errors in a bare `Exception` whose message embeds a bound
  method's repr and a multi-line spec; the innermost damage-type cause names the problem
  ("OUT_OF_RANGE: ... byte range ... is not valid for value of size N").  Anything else (a
  TypeError, say) is a programming error and must propagate with its traceback.
  """
  wrapped = type(error) is Exception
  if not (wrapped or isinstance(error, _DAMAGE_TYPES)):
    return None
  chain: list[BaseException] = []
  e: BaseException | None = error
  while e is not None and not any(e is c for c in chain):
    chain.append(e)
    e = e.__cause__ or e.__context__
  causes = [c for c in chain if isinstance(c, _DAMAGE_TYPES)]
  if not causes:
    return None
  root = causes[-1]
  text = (str(root).strip().splitlines() or [""])[0].split(" See full TensorStore details")[0]
  text = re.sub(r' in OCDBT database at local file "[^"]*"', "", text)  # the caller names it
  if len(text) > 200:
    text = text[:197] + "..."
  return f"{type(root).__name__}: {text}"


# A failed restore leaves TensorStore reads in flight on an event loop Orbax has closed: when
# they finish they report "Event loop is closed", and their abandoned coroutines report again
# when collected (often at exit, as dozens of tracebacks).  Both go to sys.unraisablehook; once a
# restore has failed, that noise is dropped and everything else passes through.
_restore_failed = False
# True from the start of a restore until it succeeds: a failing read's threads may report into the
# closed loop before the failure reaches us and sets _restore_failed.
_restoring = False
_hook_installed = False


def _is_abandoned_read_noise(unraisable) -> bool:
  exc = unraisable.exc_value
  if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
    return True
  code = getattr(unraisable.object, "cr_code", None)
  return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _install_quiet_hook() -> None:
  global _hook_installed
  if _hook_installed:
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if (_restore_failed or _restoring) and _is_abandoned_read_noise(unraisable):
      return
    previous(unraisable)

  sys.unraisablehook = hook
  # The same abandoned reads, when their task or future is collected, are reported by asyncio's
  # logger ("Task exception was never retrieved" or "Future ...", with TensorStore's multi-line
  # spec and the read's traceback).
  logging.getLogger("asyncio").addFilter(_AbandonedTaskFilter())
  _hook_installed = True


class _AbandonedTaskFilter(logging.Filter):
  """Drops asyncio's report of an Orbax read whose restore already failed (and was said).

  A task's report names its Orbax coroutine; a bare future's names only the exception, whose
  traceback runs through Orbax: either marks the read as Orbax's.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if not ((_restore_failed or _restoring) and "exception was never retrieved" in message):
      return True
    exc = record.exc_info[1] if record.exc_info else None
    frames = traceback.extract_tb(exc.__traceback__) if exc is not None else []
    from_orbax = "orbax" in message or any(f"{os.sep}orbax{os.sep}" in f.filename for f in frames)
    return not from_orbax


def leave_quietly_after_a_failed_restore(code: int) -> None:
  """For an entry point that is done: after a failed restore, TensorStore's abandoned reads
  report into a closed event loop while the interpreter shuts down (tracebacks after the one-line
  error, at times).  Every output is written and closed by then, so this flushes and leaves
  without finalization; without a failed restore it returns."""
  if _restore_failed:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _sync(name: str) -> None:
  """A barrier over every process (none needed, and none possible, in a single process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


class _Unrestorable(Exception):
  """A checkpoint whose files do not restore into the expected tree."""

  def __init__(self, step: int, reason: str):
    super().__init__(f"checkpoint {step}: {reason}")
    self.step, self.reason = step, reason


class Checkpointer:
  """Saves every `every` steps (and when asked), keeps the last `keep`, restores the latest."""

  def __init__(self, workdir: str, keep: int = 3, every: int = 1, sharding=None):
    """Args:
      workdir: the run's folder; checkpoints go to workdir/checkpoints/<step>.
      keep: how many to keep.
      every: save() saves only steps that are multiples of this (unless forced).
      sharding: where restored arrays are placed (default: this process's first device).  A
        training run passes its replicated mesh sharding.  Naming it, rather than reusing the
        saved one, lets a checkpoint restore on another topology: one written by two processes
        restores in one, and the other way round.
    """
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.every = every
    self.sharding = sharding
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           save_interval_steps=1)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, tree, force: bool = False) -> bool:
    if not force and step % self.every:
      return False
    saved = self.manager.save(step, args=ocp.args.StandardSave(tree), force=force)
    return bool(saved)

  def _restore(self, step: int, abstract_tree, partial: bool = False):
    """The tree of `step`; _Unrestorable if its files are damaged or from another config.

    `partial`: `abstract_tree` names a subset of the saved tree (nested dicts by field name), and
    only those arrays are read (the codec reads the generator, not both Adam states).
    """
    global _restore_failed, _restoring
    sharding = self.sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def target_of(leaf):
      if isinstance(leaf, jax.ShapeDtypeStruct):  # a jax array's shape: placed on `sharding`
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding or sharding)
      return ocp.utils.to_shape_dtype_struct(leaf)  # a numpy value stays one

    target = jax.tree.map(target_of, abstract_tree)
    # A checkpoint of the first parameter layout (`param_layout`) is read in its own structure,
    # then moved: the same arrays, under today's names.
    saved = self._saved_structure(step)
    old_layout = saved is not None and param_layout.is_layout_1(
        param_layout.keys_of(path) for path, _ in jax.tree_util.tree_leaves_with_path(saved))
    if old_layout:
      target = param_layout.saved_shaped(saved, param_layout.rename_to_layout_1(target))
    _install_quiet_hook()
    _restoring = True
    try:
      if partial:
        tree = self.manager.restore(step, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
      else:
        tree = self.manager.restore(step, args=ocp.args.StandardRestore(target))
      _restoring = False
      return param_layout.moved_to_layout_2(tree, abstract_tree) if old_layout else tree
    except Exception as e:
      reason = damage_reason(e)
      if reason is None:
        raise
      _restore_failed = True
      raise _Unrestorable(step, reason) from None

  def _saved_structure(self, step: int):
    """The saved tree's structure (nested dicts and lists of array metadata), or None where its
    metadata does not read (a damaged checkpoint: the restore itself then says why)."""
    try:
      return ocp.PyTreeCheckpointHandler().metadata(
          epath.Path(self.directory) / str(step) / "default").tree
    except Exception:  # noqa: BLE001 (any unreadable metadata: left to the restore to report)
      return None

  def restore(self, abstract_tree, step: int | None = None, partial: bool = False):
    """Restores `step` (default: the latest) into the structure (and shardings) of `abstract_tree`
    (with `partial`, a subset of the saved tree: see `_restore`).

    Raises:
      UserError: no checkpoint, or this one does not restore.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise UserError(f"no checkpoint in {self.directory}: train first, or pass the right "
                      "workdir")
    try:
      return self._restore(step, abstract_tree, partial)
    except _Unrestorable as e:
      raise UserError(f"checkpoint {step} in {self.directory} is damaged or from another config "
                      f"({e.reason}): rerun train.py on this workdir to set a damaged one aside, "
                      "or use the workdir of this config") from None

  def restore_newest_good(self, abstract_tree, set_aside: bool, partial: bool = False):
    """The newest checkpoint that restores, trying older ones while the newer are damaged.

    Args:
      abstract_tree: the structure to restore into.
      set_aside: move the damaged checkpoints newer than the restored one to
        workdir/checkpoints_damaged/ (only a training run, which owns the folder, does).
      partial: `abstract_tree` names a subset of the saved tree (see `_restore`).

    Returns:
      None if there is no checkpoint, else (step, tree, note): note is one line naming the
      damaged checkpoints skipped (and where they went), None if the newest restored.

    Raises:
      UserError: no checkpoint restores.  Nothing is moved then: when every one fails, a
        different config is a likelier cause than damage.
    """
    failures = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        tree = self._restore(step, abstract_tree, partial)
      except _Unrestorable as e:
        failures.append(e)
        continue
      return step, tree, self._skip(failures, set_aside) if failures else None
    if not failures:
      return None
    raise UserError(f"no checkpoint in {self.directory} restores (newest, {failures[0].step}: "
                    f"{failures[0].reason}): they are damaged or from another config; pass the "
                    "config they were trained with, or move the folder aside to train afresh")

  def _skip(self, failures, set_aside: bool) -> str:
    """Sets the damaged checkpoints aside (if asked) and says so in one line."""
    steps = ", ".join(str(f.step) for f in failures)
    note = (f"checkpoint{'s' if len(failures) > 1 else ''} {steps} in {self.directory} "
            f"{'are' if len(failures) > 1 else 'is'} damaged ({failures[0].reason})")
    if not set_aside:
      return note
    aside = os.path.join(os.path.dirname(self.directory), DAMAGED_DIR)
    # Names first, while no process has moved anything, so every process reports the same ones.
    moved = [_free_name(aside, str(f.step)) for f in failures]
    _sync("sparse_jax_before_set_aside")  # every process is done reading them
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      for f, dst in zip(failures, moved):
        os.replace(os.path.join(self.directory, str(f.step)), dst)
    _sync("sparse_jax_after_set_aside")
    self.manager.reload()  # its cached step list still holds the moved ones
    return f"{note}; moved to {', '.join(moved)}"

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def _free_name(folder: str, name: str) -> str:
  """folder/name, or folder/name.N for the first N not taken (a step damaged twice keeps both)."""
  path, n = os.path.join(folder, name), 0
  while os.path.exists(path):
    n += 1
    path = os.path.join(folder, f"{name}.{n}")
  return path


def _trained_config(workdir: str) -> tuple[ml_collections.ConfigDict, dict]:
  """A training run's config (migrated, and as saved), or one line if the workdir has none or no
  checkpoints."""
  saved = load_config_dict(workdir)
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    raise UserError(f"no checkpoints in {workdir!r}: train first (python train.py ... "
                    f"--workdir {workdir})")
  return config.from_dict(saved), saved


def _read(workdir: str, tree, step: int | None, log, partial: bool):
  """`tree` from checkpoint `step`; with no step and a `log`, the newest that restores (a damaged
  newer one is reported through `log` and left where it is)."""
  ckpt = Checkpointer(workdir)
  try:
    if step is None and log is not None:
      found = ckpt.restore_newest_good(tree, set_aside=False, partial=partial)
      if found is None:
        raise UserError(f"no checkpoint in {ckpt.directory}: train first, or pass the right "
                        "workdir")
      step, restored, note = found
      if note:
        log(f"{note}; using step {step}, the newest that restores")
      return restored
    return ckpt.restore(tree, step, partial=partial)
  finally:
    ckpt.close()


def restore_train_state(workdir: str, step: int | None = None, log=None):
  """Config, graphs and the latest TrainState of a workdir (for eval and the codec tool).

  Args:
    workdir: a training run's workdir.
    step: the checkpoint to restore (default: the latest).
    log: if given (and no step is), a damaged latest checkpoint is reported through it and the
      newest one that restores is used instead; the folder is left as it is (train.py sets
      damaged checkpoints aside).  The codec passes none: it names its model by checkpoint, so
      a damaged one is an error rather than a silent change of model.

  Returns:
    (cfg, graphs, state, extra) where extra holds the data position and model id.
  """
  from sparse_jax import train_step
  cfg, saved = _trained_config(workdir)
  graphs, abstract = train_step.abstract_train_state(cfg)
  tree = {"state": abstract, "data_step": np.zeros((), np.int64)}
  restored = _read(workdir, tree, step, log, partial=False)
  state = restored["state"]
  extra = {"data_step": int(restored["data_step"]),
           "model_id": model_id(saved, int(state.step))}
  return cfg, graphs, state, extra


def restore_generator(workdir: str, step: int | None = None, log=None):
  """The generator of a workdir's latest (or given) checkpoint, and nothing else.

  Only the generator's arrays are read (a partial restore): no optimiser state, no discriminator.
  What the codec, the report, `export` and `eval.py` use.  `log`: as in `restore_train_state`
  (eval passes one; the codec does not).

  Returns:
    (cfg, graphs, g_params, model_id, step).
  """
  from sparse_jax import train_step
  cfg, saved = _trained_config(workdir)
  graphs, abstract = train_step.abstract_generator(cfg)
  tree = {"state": {"g_params": abstract, "step": jax.ShapeDtypeStruct((), np.int32)}}
  restored = _read(workdir, tree, step, log, partial=True)
  step = int(restored["state"]["step"])
  return cfg, graphs, restored["state"]["g_params"], model_id(saved, step), step
