"""Keeps XLA's "Very slow compile?" banner out of what a user reads on stderr.

When one compilation takes long (minutes on a busy 2-core machine), XLA's C++ `slow_operation_alarm`
logs a banner at ERROR level straight to file descriptor 2:

  E1207 13:21:47.123456  1234 slow_operation_alarm.cc:73]
  ********************************
  [Compiling module jit_fn] Very slow compile? If you want to file a bug, run with envvar ...
  ********************************

It is a diagnostic for XLA's developers, not an error of the user's, and there is no flag to turn
it off (TF_CPP_MIN_LOG_LEVEL=3 would hide every other C++ error too).  `without_xla_alarms()`
routes fd 2 through a pipe while a block runs (loading a model, encoding, decoding, a report) and
drops those banners; everything else (progress bars, warnings, real errors) passes through as it
is written.  Nested uses share one filter.
"""
import contextlib
import functools
import os
import re
import sys
import threading

# The first line of an alarm, and what its banner is made of.
_ALARM_LINE = re.compile(rb"slow_operation_alarm|Very slow compile\?")
_BANNER_LINE = re.compile(rb"^\s*(\*+|\[Compiling module .*|.*Very slow compile\?.*|The operation "
                          rb"took .*|)\s*$")
# Where a C++ log line begins: absl's `E1207 13:21:47.123456` or TSL's `2024-06-17 11:40:02.93: E`.
_LOG_PREFIX = re.compile(rb"[EWIF]\d{4} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# A partial line that may be the start of a C++ log line (`E1207 13:...` or `2024-06-17 ...:`):
# held back until its end arrives, so an alarm is recognised whole.
_LOG_START = re.compile(rb"^([EWIF]\d{0,4}( .*)?|\d{1,4}(-.*)?)$", re.DOTALL)

_lock = threading.Lock()
_depth = 0
_active = None


class _Filter:
  """A line filter between a pipe and the real stderr (runs in its own thread)."""

  def __init__(self, read_fd: int, out_fd: int):
    self.read_fd, self.out_fd = read_fd, out_fd
    self.pending = b""
    self.in_banner = False
    self.thread = threading.Thread(target=self._run, name="xla-alarm-filter", daemon=True)
    self.thread.start()

  def _write(self, data: bytes):
    while data:
      try:
        data = data[os.write(self.out_fd, data):]
      except OSError:
        return

  def _line(self, line: bytes) -> bytes:
    """What to forward of one complete line (with its newline)."""
    if _ALARM_LINE.search(line):
      self.in_banner = True
      # What a progress bar drew on this line before the log line began is kept.
      start = _LOG_PREFIX.search(line)
      return line[:start.start()] if start else b""
    if self.in_banner:
      if _BANNER_LINE.match(line.rstrip(b"\r\n")):
        return b""
      self.in_banner = False
    return line

  def _feed(self, data: bytes):
    text = self.pending + data
    out = []
    *lines, tail = text.split(b"\n")
    for line in lines:
      out.append(self._line(line + b"\n"))
    # A partial line is forwarded at once (a progress bar redraws with '\r' and no newline),
    # unless it may be the start of a log line or a banner.
    if tail and not self.in_banner and not _LOG_START.match(tail.rsplit(b"\r", 1)[-1]):
      out.append(tail)
      tail = b""
    self.pending = tail
    self._write(b"".join(out))

  def _run(self):
    while True:
      try:
        data = os.read(self.read_fd, 65536)
      except OSError:
        break
      if not data:
        break
      self._feed(data)
    if self.pending and not (self.in_banner and _BANNER_LINE.match(self.pending)):
      self._write(self.pending)
    os.close(self.read_fd)


@contextlib.contextmanager
def without_xla_alarms():
  """Runs the block with XLA's slow-compile banners removed from file descriptor 2."""
  global _depth, _active
  with _lock:
    _depth += 1
    start = _depth == 1
    if start:
      try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        _active = (saved, _Filter(read_fd, saved))
      except (OSError, ValueError):  # no usable fd 2 (a closed stderr): nothing to filter
        _active = None
  try:
    yield
  finally:
    with _lock:
      _depth -= 1
      if _depth == 0 and _active is not None:
        saved, flt = _active
        _active = None
        try:
          sys.stderr.flush()
        except (OSError, ValueError):
          pass
        os.dup2(saved, 2)  # the pipe's last writer goes: the filter reads its end and stops
        # A child process started inside the block may still hold the pipe: do not wait on it.
        flt.thread.join(timeout=5.0)
        os.close(saved)


def quiet_xla(fn):
  """Decorator: `fn` runs inside `without_xla_alarms()`."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    with without_xla_alarms():
      return fn(*args, **kwargs)

  return wrapper
