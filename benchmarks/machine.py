"""The machine a figure was measured on: CPU, cores, memory, library versions, the device.

Every benchmark writes it beside its figures (speed.py as a record, quality.py as one line), so a
number always says where it came from.
"""
import os
import platform


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def total_memory_bytes() -> int | None:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def machine_info() -> dict:
  """The host: CPU, cores, memory, library versions and the XLA flags in effect."""
  import jax
  import jaxlib
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count() or 1
  return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "usable_cores": usable,
          "memory_bytes": total_memory_bytes(), "python": platform.python_version(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "os": platform.platform()}


def device_info() -> dict:
  import jax
  d = jax.devices()[0]
  return {"platform": jax.default_backend(), "device_kind": d.device_kind,
          "device_count": jax.device_count()}


def one_line() -> str:
  """'cpu (cpu), CPU AMD EPYC ..., 2 cores': the device and host in one line."""
  import jax
  return (f"{jax.default_backend()} ({jax.devices()[0].device_kind}), CPU {cpu_model()}, "
          f"{os.cpu_count()} cores")
