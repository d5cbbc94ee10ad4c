"""The shared progress bar (sparse_jax/progress.py)."""
import io
import sys
import time

from sparse_jax import progress


def test_the_first_unit_does_not_set_the_rate(monkeypatch):
  """The first window carries compilation: after `restart_clock` the ETA counts only later
  windows (it said 421 s for a 33 s encode)."""
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  bar = progress.bar(10, "encoding", unit="window")
  time.sleep(0.5)  # "compilation"
  bar.update(1)
  progress.restart_clock(bar)
  assert bar.n == 1
  for _ in range(3):
    time.sleep(0.02)
    bar.update(1)
  rate = bar.format_dict["rate"] or (bar.n - bar.initial) / bar.format_dict["elapsed"]
  assert rate > 10, rate  # ~40 windows/s, not the ~7 that counting the first unit would give
  bar.close()
  assert "encoding" in sys.stderr.getvalue() and "10" in sys.stderr.getvalue()


def test_disabled_bar_is_silent(monkeypatch):
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  bar = progress.bar(3, "x", enabled=False)
  bar.update(1)
  progress.restart_clock(bar)
  bar.close()
  assert sys.stderr.getvalue() == ""
