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
from tqdm.std import EMA

# Seconds between redraws into a file that is not a terminal (a log).
LOG_INTERVAL_S = 20.0


def _is_tty(stream) -> bool:
  return bool(getattr(stream, "isatty", None)) and stream.isatty()


def bar(total, desc: str, *, enabled: bool = True, unit: str = "it", initial: int = 0,
        unit_scale: bool = False, bar_format: str | None = None) -> tqdm:
  """A tqdm bar on stderr (disabled when `enabled` is false: every method becomes a no-op).

  A bar opened while another is open (a file's windows under a folder's files) sits below it and
  is erased when it closes; a top-level bar stays (tqdm's leave=None).
  """
  stream = sys.stderr
  tty = _is_tty(stream)
  return tqdm(total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale,
              disable=not enabled, file=stream, dynamic_ncols=tty, bar_format=bar_format,
              mininterval=0.1 if tty else LOG_INTERVAL_S, leave=None)


def restart_clock(progress: tqdm) -> None:
  """Forgets the time spent so far: the rate and ETA from now on count only later units.

  Call it after a first unit that carried one-off work (compilation); the count is kept.
  """
  if progress.disable:
    return
  # What tqdm's reset() does, without its count of 0 and its redraw: the bar must never show a
  # count going back (it read "1/35" then "0/35").  `initial` = the count now, so the mean rate
  # is over the units after it.
  progress.last_print_t = progress.start_t = progress._time()
  progress.initial = progress.last_print_n = progress.n
  for name in ("_ema_dn", "_ema_dt", "_ema_miniters"):
    setattr(progress, name, EMA(progress.smoothing))


class Progress:
  """A bar counting to `total`: `update(done)` takes the count so far, not an increment.

  The first unit usually carries JAX's compilation, so the rate and ETA count from after it.
  """

  def __init__(self, total: int, label: str, enabled: bool = True, unit: str = "it"):
    self.bar = bar(max(int(total), 1), label, enabled=enabled, unit=unit)
    self._first = True

  def update(self, done: int):
    self.bar.update(max(int(done) - self.bar.n, 0))
    if self._first and done > 0:
      self._first = False
      restart_clock(self.bar)

  def close(self):
    self.bar.close()
