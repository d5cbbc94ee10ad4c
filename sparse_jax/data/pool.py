"""Worker processes that each run one task at a time, with a deadline per task.

    for task, status, payload in Pool(2, timeout_s=120.0, handler=render_one).run(tasks):
      ...   # status: 'ok', 'error' or 'timeout', as tasks finish

`handler` is a top-level function (pickled by name into each worker): task -> (status, payload).
The embedded dataset's build renders one score per task with it (`classical.build`).
"""
import collections
import importlib
import multiprocessing
import multiprocessing.connection
import os
import time

from sparse_jax.errors import UserError


def _worker(conn, handler):
  """Worker process loop: say 'ready' once imported, then answer each task with `handler`."""
  conn.send(('ready', os.getpid()))
  while True:
    try:
      task = conn.recv()
    except EOFError:
      return
    if task is None:
      return
    conn.send(handler(task))


class Pool:
  """Worker processes that each run one task at a time; a task over its time limit is killed.

  concurrent.futures cannot stop a running task, and one pathological score can take many
  minutes in music21, so each worker is a process we can kill and replace.  'spawn' keeps the
  workers independent of whatever threads the parent has (JAX, if it was imported).  A task's
  clock starts once its worker has finished importing, so start-up never counts against it.
  """

  _STARTUP_LIMIT_S = 120.0

  def __init__(self, n_workers: int, timeout_s: float, handler):
    self.ctx = multiprocessing.get_context('spawn')
    self.timeout_s = timeout_s
    # A top-level function (pickled by name into each worker): task -> (status, payload).
    self.handler = handler
    self.n_workers = max(1, n_workers)
    self.workers: list[dict] = []  # dicts: proc, conn, ready, spawned, task, started

  def _spawn(self):
    target = importlib.import_module('sparse_jax.data.pool')._worker
    parent, child = self.ctx.Pipe()
    proc = self.ctx.Process(target=target, args=(child, self.handler), daemon=True)
    proc.start()
    child.close()
    return {'proc': proc, 'conn': parent, 'ready': False, 'spawned': time.monotonic(),
            'task': None, 'started': 0.0}

  def _stop(self, worker, kill=False):
    if kill:
      worker['proc'].kill()
    else:
      try:
        worker['conn'].send(None)
      except (BrokenPipeError, OSError):
        worker['proc'].kill()
    worker['proc'].join(timeout=5)
    if worker['proc'].is_alive():
      worker['proc'].kill()
      worker['proc'].join()
    worker['conn'].close()

  def _discard(self, worker):
    """Kills a stuck or dead worker; the loop starts a fresh one if tasks remain."""
    self._stop(worker, kill=True)
    self.workers.remove(worker)

  @staticmethod
  def _startup_error(why: str) -> UserError:
    return UserError(f'the build\'s worker processes {why} (see any traceback above); run the '
                     'build from a script file or `python -m`, or pass workers=0 (--workers 0)')

  def run(self, tasks):
    """Yields (task, status, payload) as tasks finish; status is 'ok', 'error' or 'timeout'."""
    pending = collections.deque(tasks)
    try:
      while pending or any(w['task'] is not None for w in self.workers):
        while pending and len(self.workers) < self.n_workers:
          self.workers.append(self._spawn())
        for w in self.workers:
          if w['task'] is None and pending:
            w['task'], w['started'] = pending.popleft(), time.monotonic()
            w['conn'].send(w['task'])
        busy = [w for w in self.workers if w['task'] is not None]
        # Wake at the nearest deadline, so a task is stopped on time rather than at the next poll.
        now = time.monotonic()
        left = [w['started'] + self.timeout_s - now for w in busy if w['ready']]
        wait_s = min([0.5] + left)
        ready = multiprocessing.connection.wait([w['conn'] for w in busy],
                                                timeout=max(wait_s, 0.0))
        for w in busy:
          task, now = w['task'], time.monotonic()
          if w['conn'] in ready:
            try:
              status, payload = w['conn'].recv()
            except (EOFError, OSError):
              if not w['ready']:
                raise self._startup_error('exit during start-up') from None
              status, payload = 'error', f'worker process died (exit code {w["proc"].exitcode})'
              self._discard(w)
            if status == 'ready':
              w['ready'], w['started'] = True, now
              continue
            w['task'] = None
            if status == 'ok' and now - w['started'] > self.timeout_s:
              # The deadline holds on arrival too: a result that comes in late is refused, so the
              # outcome depends on the limit, not on when this loop happened to look.
              status, payload = 'timeout', f'took over {self.timeout_s:g} s'
            yield task, status, payload
          elif not w['ready']:
            if now - w['spawned'] > self._STARTUP_LIMIT_S:
              raise self._startup_error(f'did not start within {self._STARTUP_LIMIT_S:g} s')
          elif now - w['started'] > self.timeout_s:
            self._discard(w)
            w['task'] = None
            yield task, 'timeout', f'took over {self.timeout_s:g} s'
        # Let idle workers go once nothing is left for them.
        if not pending:
          for w in [w for w in self.workers if w['task'] is None]:
            self._stop(w)
            self.workers.remove(w)
    finally:
      for w in self.workers:
        self._stop(w, kill=True)
      self.workers = []
