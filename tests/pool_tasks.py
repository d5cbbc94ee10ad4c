"""Tasks for the build's worker pool whose duration is fixed by construction, not by machine speed.

They live in a module of their own because the pool's 'spawn' workers import a task by name.
"""
import time


def instant(task):
  """Answers at once."""
  return ('ok', {'task': task})


def never_in_time(task):
  """Sleeps far past any limit a test sets (the pool must kill it)."""
  time.sleep(600)
  return ('ok', {'task': task})
