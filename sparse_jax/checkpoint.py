"""Checkpoints: the only module that imports orbax.

A workdir holds `config.json` (everything needed to rebuild the model) and `checkpoints/<step>/`
written by an Orbax `CheckpointManager` with `StandardSave` / `StandardRestore`.  The saved tree
is the whole `TrainState` (step, both players' parameters and optimiser states, the RNG) plus the
data position, so a restarted run resumes exactly.
"""
import hashlib
import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from sparse_jax.errors import UserError

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def save_config(workdir: str, cfg) -> None:
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(cfg.to_json(indent=2))
  os.replace(tmp, path)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f"no trained model in {workdir!r} ({CONFIG_FILE} missing): pass the --workdir "
                    "of a training run (python train.py --config ... --workdir DIR)")
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is unreadable ({e}): retrain or restore the file") from None
  cfg = ml_collections.ConfigDict(data)
  # JSON turns tuples into lists; the model expects a hashable tuple of dilations.
  cfg.model.dilations = tuple(cfg.model.dilations)
  return cfg


def model_id(cfg, step: int) -> bytes:
  """16 bytes naming the model that encodes a file: config and training step."""
  text = json.dumps(json.loads(cfg.to_json()), sort_keys=True) + f"#step={int(step)}"
  return hashlib.sha256(text.encode()).digest()[:16]


class Checkpointer:
  """Saves every `every` steps (and when asked), keeps the last `keep`, restores the latest."""

  def __init__(self, workdir: str, keep: int = 3, every: int = 1):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.every = every
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

  def restore(self, abstract_tree, step: int | None = None):
    """Restores into the structure (and shardings) of `abstract_tree`."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise UserError(f"no checkpoint in {self.directory}: train first, or pass the right "
                      "--workdir")
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_tree)
    try:
      return self.manager.restore(step, args=ocp.args.StandardRestore(target))
    except (FileNotFoundError, ValueError, KeyError) as e:
      raise UserError(f"checkpoint {step} in {self.directory} cannot be restored "
                      f"({type(e).__name__}: {str(e).splitlines()[0][:200]}): it is corrupt or "
                      "from another config; delete it or use its own workdir") from None

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def restore_train_state(workdir: str, step: int | None = None):
  """Config, graphs and the latest TrainState of a workdir (for eval and the codec tool).

  Returns:
    (cfg, graphs, state, extra) where extra holds the data position and model id.
  """
  from sparse_jax import train_step
  cfg = load_config(workdir)
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    raise UserError(f"no checkpoints in {workdir!r}: train first (python train.py ... "
                    f"--workdir {workdir})")
  graphs, abstract = train_step.abstract_train_state(cfg)
  ckpt = Checkpointer(workdir)
  restored = ckpt.restore({"state": abstract, "data_step": np.zeros((), np.int64)}, step)
  ckpt.close()
  state = restored["state"]
  extra = {"data_step": int(restored["data_step"]),
           "model_id": model_id(cfg, int(state.step))}
  return cfg, graphs, state, extra
