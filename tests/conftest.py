"""Test-wide setup: 4 virtual CPU devices, so data-parallel code is tested on every machine.

The flag must be set before JAX initialises its backends, which is why it sits here at import
time (pytest imports conftest.py before any test module).
"""
import os
import sys

# Tests compile many small programs and run each a few times: LLVM's optimisation passes cost
# XLA:CPU far more compile time (2-5x) than they save in run time at the tiny config's sizes.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                      "--xla_llvm_disable_expensive_passes=true")

# Several tests build the same programs (the tiny train step, say) in new jit objects or in
# subprocesses: a compilation cache shared by the session compiles each only once.  Named before
# JAX is imported, so that it is the one the entry points (and their subprocesses) keep.
_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sparse_jax_test_cache_{os.getuid()}"))

from sparse_jax import xla_flags  # noqa: E402

xla_flags.set_for_this_process()  # what every entry point sets (the package itself sets nothing)

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_platforms", "cpu")
# Broadcasting arrays of different ranks is written out (`x[None]`), as nanodo's tests require:
# an implicit rank promotion is how a (B,) meets a (T,) and silently makes (B, T).
jax.config.update("jax_numpy_rank_promotion", "raise")

jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

# Make the repository root importable (configs/, train.py, eval.py live there).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def classical_tiny(tmp_path_factory):
  """The embedded dataset's 'tiny' preset (6 chorales), rendered once per session (~15 s)."""
  from sparse_jax.data import classical
  root = tmp_path_factory.mktemp("classical")
  classical.build(str(root), preset="tiny", workers=0, progress=False)
  return str(root)


@pytest.fixture()
def tiny_config(classical_tiny, tmp_path):
  """The ':tiny' config reading the session's tiny dataset, with a private audio cache."""
  from configs import musicnet
  cfg = musicnet.get_config("tiny")
  cfg.data.root = classical_tiny
  cfg.data.cache_dir = str(tmp_path / "cache")
  return cfg
