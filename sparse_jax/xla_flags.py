"""XLA flags a process needs before JAX initialises its backends: set by the entry points.

`import sparse_jax` changes nothing in the environment; `train.py`, `eval.py`, the `sparse-jax`
command, `python -m benchmarks.*` and the tests call `set_for_this_process()` first.  A program
that imports the library itself and trains (or refines) on a CPU with JAX >= 0.11 calls it too.
"""
import os
from importlib import metadata


def set_for_this_process() -> None:
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
