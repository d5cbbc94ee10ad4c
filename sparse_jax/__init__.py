"""sparse_jax: a sparse, interpretable audio codec in JAX/Flax.

Audio is encoded as a small set of events (a vector plus a time); a physical decoder renders each
event as attack -> resonance -> room, scheduled at its time.  See README.md.
"""

__version__ = "0.1.0"


def _avoid_cpu_deadlock() -> None:
  """JAX >= 0.11 (Python >= 3.12 hosts): XLA:CPU's multi-threaded Eigen kernels deadlock in the
  train step's gradient (the first metrics fetch waits forever at 0% CPU; seen with jax 0.11.2
  on this project's 2-core machine, not with 0.10.2).  Single-threaded Eigen avoids it; it must
  be in XLA_FLAGS before the first computation, so it is set on import.  GPUs and TPUs do not
  run these kernels on Eigen and are unaffected."""
  import os  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  try:
    major, minor = (int(p) for p in metadata.version("jax").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if (major, minor) >= (0, 11) and "xla_cpu_multi_thread_eigen" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


_avoid_cpu_deadlock()
