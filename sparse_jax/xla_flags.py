"""What a process sets up before JAX compiles anything: XLA flags and the compilation cache.

`import sparse_jax` changes nothing in the environment or in JAX's config; `train.py`, `eval.py`,
the `sparse-jax` command and `python -m benchmarks.*` call `set_for_this_process()` first (the
tests set their own cache in `conftest.py`).  A program that imports the library itself and
trains (or refines) on a CPU with JAX >= 0.11 calls it too, and gets the cache with it.
"""
import os
import sys
from importlib import metadata

# Set to 0 to leave JAX's persistent compilation cache off.
CACHE_SWITCH = "SPARSE_JAX_COMPILE_CACHE"


def set_for_this_process() -> None:
  """The XLA flags below, then JAX's persistent compilation cache (`use_compilation_cache`)."""
  _set_xla_flags()
  use_compilation_cache()


def use_compilation_cache() -> str | None:
  """Keeps XLA's compiled programs in the user's cache folder (`files.default_cache_dir()/jax`),
  so that a second `sparse-jax encode` of the same model starts at once instead of compiling for
  seconds.  Leaves a cache the process already chose alone (JAX_COMPILATION_CACHE_DIR); off with
  SPARSE_JAX_COMPILE_CACHE=0 or where the folder cannot be made (a cache is a saving, never a
  reason to fail).  Named in the environment, which JAX reads when it is imported: the entry
  points check their inputs before importing JAX, and this keeps it so.  Returns the folder in
  use, or None."""
  from sparse_jax import files
  chosen = os.environ.get("JAX_COMPILATION_CACHE_DIR")
  if "jax" in sys.modules:
    chosen = chosen or sys.modules["jax"].config.jax_compilation_cache_dir
  if chosen or os.environ.get(CACHE_SWITCH) == "0":
    return chosen or None
  folder = os.path.join(files.default_cache_dir(), "jax")
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return None
  os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
  if "jax" in sys.modules:  # imported already: the environment is read no more
    sys.modules["jax"].config.update("jax_compilation_cache_dir", folder)
  return folder


def _set_xla_flags() -> None:
  """JAX >= 0.11 (Python >= 3.12 hosts): XLA:CPU's multi-threaded Eigen kernels deadlock in the
  train step's gradient (the first metrics fetch waits for ever at 0% CPU; seen with jax 0.11.2
  on a 2-core machine, not with 0.10.2).  Single-threaded Eigen avoids it; it must be in XLA_FLAGS
  before the first computation.  GPUs and TPUs do not run these kernels on Eigen."""
  try:
    major, minor = (int(p) for p in metadata.version("jax").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if (major, minor) >= (0, 11) and "xla_cpu_multi_thread_eigen" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
