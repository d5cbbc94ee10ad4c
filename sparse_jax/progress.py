"""Progress bars: the one `tqdm` setup of the project (encode, decode, folders, training, data).

Every bar draws on stderr, so standard output stays free for data (`encode - -`) and summaries.
On a terminal tqdm redraws one line; into a log file (not a terminal) it redraws at most every 20 s,
so a long run's log is not one `\\r`-joined line per 0.1 s.

JAX compiles on the first call of each shape, so the first window of an encode (or the first step
of a training run) can take 10-100 times as long as the next ones.  A rate measured over it made
the first estimate wildly off (421 s for a 33 s encode); `restart_clock` is called after that first
unit, so rates and the ETA count only the units after it.
"""
import sys

from tqdm import tqdm

# Seconds between redraws into a file that is not a terminal (a log).
LOG_INTERVAL_S = 20.0


def _is_tty(stream) -> bool:
  return bool(getattr(stream, "isatty", None)) and stream.isatty()


def bar(total, desc: str, *, enabled: bool = True, unit: str = "it", initial: int = 0,
        unit_scale: bool = False, bar_format: str | None = None) -> tqdm:
  """A tqdm bar on stderr (disabled when `enabled` is false: every method becomes a no-op)."""
  stream = sys.stderr
  tty = _is_tty(stream)
  return tqdm(total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale,
              disable=not enabled, file=stream, dynamic_ncols=tty, bar_format=bar_format,
              mininterval=0.1 if tty else LOG_INTERVAL_S, leave=True)


def restart_clock(progress: tqdm) -> None:
  """Forgets the time spent so far: the rate and ETA from now on count only later units.

  Call it after a first unit that carried one-off work (compilation); the count is kept.
  """
  if progress.disable:
    return
  done = progress.n
  progress.reset()  # new start time, fresh rate averages, count 0 ...
  progress.n = progress.last_print_n = progress.initial = done  # ... then the count back
  progress.refresh()
