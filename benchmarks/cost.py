"""What a compiled JAX program costs: its time, its memory and its FLOPs, measured, not estimated.

  lowered, compiled, t = cost.lower_and_compile(jax.jit(f), *args)   # lower and compile times
  t.update(cost.timed_calls(lambda: compiled(*args), runs=5))        # warm-up, then the median
  cost.peak_rss_bytes(), cost.xla_memory(compiled)                    # host peak, XLA's estimate
  cost.corrected_flops(lower_for_events, n_events, raw)              # FLOPs of a scanned loop

Nothing here knows the model; benchmarks/speed.py applies it to the codec.
"""
import contextlib
import statistics
import sys
import time

# ------------------------------------------------------------------------------------------------
# Time.


def timed_calls(call, runs: int) -> dict:
  """First call (warm-up), then `runs` timed calls; each is closed by block_until_ready."""
  import jax
  t = time.perf_counter()
  jax.block_until_ready(call())
  first = time.perf_counter() - t
  times = []
  for _ in range(runs):
    t = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - t)
  return {"first_call_s": first, "times_s": times, "median_s": statistics.median(times),
          "min_s": min(times), "max_s": max(times)}


def lower_and_compile(jitted, *args) -> tuple:
  t = time.perf_counter()
  lowered = jitted.lower(*args)
  lower_s = time.perf_counter() - t
  t = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t
  return lowered, compiled, {"lower_s": lower_s, "compile_s": compile_s}


# ------------------------------------------------------------------------------------------------
# Memory.


def status_bytes(field: str) -> int | None:
  """A `kB` field of /proc/self/status (VmHWM, VmRSS) in bytes; None off Linux."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def peak_rss_bytes() -> int:
  """The process's peak resident set: VmHWM, else getrusage's ru_maxrss (kB on Linux)."""
  hwm = status_bytes("VmHWM")
  if hwm is not None:
    return hwm
  import resource
  scale = 1 if sys.platform == "darwin" else 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def reset_peak_rss() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def device_peak_bytes(device) -> int | None:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def xla_memory(compiled) -> dict | None:
  """XLA's static buffer estimate of a compiled program, in bytes."""
  try:
    m = compiled.memory_analysis()
  except Exception:
    return None
  if m is None:
    return None
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
            "temp_size_in_bytes", "generated_code_size_in_bytes")
  out = {f.replace("_size_in_bytes", ""): int(getattr(m, f, 0) or 0) for f in fields}
  # Donated (aliased) outputs reuse their arguments' buffers.
  out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
  return out


def memory_after_runs(device, rss_reset: bool) -> dict:
  out = {}
  if device.platform == "cpu":
    out["peak_rss_run_bytes"] = peak_rss_bytes() if rss_reset else None
  else:
    out["device_peak_bytes"] = device_peak_bytes(device)
  return out


# ------------------------------------------------------------------------------------------------
# FLOPs.


def flops_of(analysis) -> float | None:
  """The 'flops' entry of a cost analysis (a dict, or a one-element list in older JAX)."""
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis:
    return None
  value = analysis.get("flops")
  return float(value) if value is not None else None


@contextlib.contextmanager
def unrolled_scans():
  """Every `jax.lax.scan` traced inside is fully unrolled (straight-line code, no while loop), so
  XLA's cost analysis sees each step.  Only for counting: the timed programs are never built so."""
  import jax
  original = jax.lax.scan

  def scan(*args, **kwargs):
    kwargs["unroll"] = True
    return original(*args, **kwargs)

  jax.lax.scan = scan
  try:
    yield
  finally:
    jax.lax.scan = original


def corrected_flops(lower_for_events, n_events: int, raw_lowered: float | None) -> dict:
  """FLOPs of an E-event program from unrolled lowerings at 1 and 2 events (see the docstring).

  Args:
    lower_for_events: callable(E) -> a `jax.stages.Lowered` of the program with E events.
    n_events: the config's E.
    raw_lowered: the lowered cost analysis of the E-event program with its loop (counted once).

  Returns:
    dict with unrolled_1, unrolled_2, per_event (= unrolled_2 - unrolled_1), corrected, and
    loop_counted_once_ratio = raw_lowered / unrolled_1 (about 1 when XLA counts the loop once).
  """
  with unrolled_scans():
    f1 = flops_of(lower_for_events(1).cost_analysis())
    f2 = flops_of(lower_for_events(2).cost_analysis())
  if f1 is None or f2 is None:
    return {"unrolled_1": f1, "unrolled_2": f2, "per_event": None, "corrected": None,
            "loop_counted_once_ratio": None}
  per_event = f2 - f1
  return {"unrolled_1": f1, "unrolled_2": f2, "per_event": per_event,
          "corrected": f1 + (n_events - 1) * per_event,
          "loop_counted_once_ratio": raw_lowered / f1 if raw_lowered and f1 else None}
