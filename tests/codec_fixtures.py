"""Shared fixtures of the codec-tool tests: an untrained ':tiny' model saved as a training workdir.

Compilation dominates these tests on a CPU, so one workdir and one `Codec` are built per pytest
process (module-level caches) and shared by test_stream.py, test_codec_cli.py and test_report.py;
the `Codec`'s jitted functions are shared too (runtime.py caches them per model config).
"""
import atexit
import dataclasses
import functools
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import musicnet
from sparse_jax import checkpoint, train_step
from sparse_jax.codec import runtime
from sparse_jax.model import SparseCodec


def tiny_config():
  return musicnet.get_config("tiny")


def save_untrained_workdir(workdir: str, cfg=None, seed: int = 0) -> str:
  """Writes config.json and checkpoint 0 of an untrained (audible) model into `workdir`.

  The generator gets its real initialisation (the constructor `init_train_state` uses, run
  eagerly with an "rbg" PRNG key, whose random ops compile about 3x faster on a CPU than the
  default threefry ones); the discriminator and optimiser states, which the codec never reads, are
  zeros of the right shapes.  `create_train_state` spends ~40 s of a loaded 2-core CPU compiling
  initialisers the codec does not need.
  """
  cfg = cfg or tiny_config()
  _, abstract = train_step.abstract_train_state(cfg)
  g_params = nnx.state(SparseCodec(cfg.model, nnx.Rngs(jax.random.key(seed, impl="rbg"))),
                       nnx.Param)
  state = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract)
  # An untrained switch head gives gains of ~1e-4 (inaudible events that remove nothing); a switch
  # bias of 1 makes every event audible and the residual shares move, so the tests can see them.
  bias = g_params["encoder"]["to_switch"]["bias"]
  bias[...] = jnp.ones_like(bias[...])
  state = dataclasses.replace(state, g_params=g_params)
  checkpoint.save_config(workdir, cfg)
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(0, {"state": state, "data_step": np.zeros((), np.int64)}, force=True)
  ckpt.close()
  return workdir


@functools.cache
def _root() -> str:
  root = tempfile.mkdtemp(prefix="sparse_jax_codec_tests_")
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  return root


@functools.cache
def tiny_workdir() -> str:
  """The path of a shared workdir holding the untrained ':tiny' model (seed 0)."""
  return save_untrained_workdir(os.path.join(_root(), "tiny_seed0"))


@functools.cache
def other_workdir() -> str:
  """A second model (another seed, another training step): a different model id."""
  cfg = tiny_config()
  cfg.seed = 1  # The config is part of the model id.
  return save_untrained_workdir(os.path.join(_root(), "tiny_seed1"), cfg, seed=1)


@functools.cache
def tiny_codec() -> runtime.Codec:
  return runtime.Codec.from_workdir(tiny_workdir())


def scratch_dir(name: str) -> str:
  """A fresh folder under the shared temporary root."""
  path = tempfile.mkdtemp(prefix=name + "_", dir=_root())
  return path
