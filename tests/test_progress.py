"""The shared progress bar (sparse_jax/progress.py)."""
import io
import sys

import pytest

from sparse_jax import progress


def test_the_first_unit_does_not_set_the_rate(monkeypatch):
  """The first window carries compilation: after `restart_clock` the ETA counts only later
  windows (it said 421 s for a 33 s encode).  The bar reads a fake clock, so the verdict does not
  depend on how fast or loaded the machine is."""
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  now = [1000.0]
  bar = progress.bar(10, "encoding", unit="window")
  bar._time = lambda: now[0]  # tqdm's own clock hook
  bar.start_t = bar.last_print_t = now[0]
  now[0] += 10.0  # "compilation"
  bar.update(1)
  progress.restart_clock(bar)
  assert bar.n == 1
  for _ in range(3):
    now[0] += 0.1
    bar.update(1)
  rate = bar.format_dict["rate"] or (bar.n - bar.initial) / bar.format_dict["elapsed"]
  # 10 windows/s, not the 0.39 that counting the first unit would give.
  assert rate == pytest.approx(10.0), rate
  bar.close()
  assert "encoding" in sys.stderr.getvalue() and "10" in sys.stderr.getvalue()


def test_disabled_bar_is_silent(monkeypatch):
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  bar = progress.bar(3, "x", enabled=False)
  bar.update(1)
  progress.restart_clock(bar)
  bar.close()
  assert sys.stderr.getvalue() == ""


def test_the_count_never_goes_back_after_the_first_unit(monkeypatch):
  """One bar, one count: restarting the clock after the compiling first window must not redraw
  the bar at 0 (an encode showed `1/375` and then `0/375`)."""
  import re
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  bar = progress.bar(5, "encoding", unit="window")
  bar.update(1)
  bar.refresh()
  progress.restart_clock(bar)
  bar.refresh()
  bar.update(1)
  bar.close()
  counts = [int(c) for c in re.findall(r"(\d+)/5", sys.stderr.getvalue())]
  assert counts[-1] == 2 and 1 in counts, counts
  assert counts == sorted(counts), counts


def test_a_bar_inside_another_is_erased_when_it_closes(monkeypatch):
  """Folder mode: a file's window bar sits under the files' bar and does not stay behind."""
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  outer = progress.bar(2, "files")
  inner = progress.bar(3, "windows")
  assert inner.pos != outer.pos and not inner.leave or inner.leave is None
  inner.update(3)
  inner.close()
  outer.update(2)
  outer.close()
  assert "files" in sys.stderr.getvalue()
