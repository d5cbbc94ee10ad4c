"""Atomic outputs: every file this project writes appears whole or not at all.

    with files.atomic_output(path) as tmp:   # write tmp by any means (a library, a figure)
      ...
    files.write_text(path, text)              # or in one call
    files.write_bytes(path, data)             # fsynced, for the codec's event files
    files.check_input_file(path, 'an audio file')   # before reading: exists, is a plain file
    files.default_cache_dir()                 # where caches live ($SPARSE_JAX_CACHE)

A reader sees the old file or the complete new one, never a partial one, and an interrupted writer
leaves nothing behind.
"""
import contextlib
import os
import shutil
import stat
import uuid

from sparse_jax.errors import UserError


@contextlib.contextmanager
def atomic_output(path):
  """Yields a temporary path beside `path`; on success it replaces `path` in one step.

  Args:
    path: the final file path.

  Yields:
    The temporary path to write to (same folder, hidden name, same extension).
  """
  path = os.fspath(path)
  folder, base = os.path.split(os.path.abspath(path))
  _, ext = os.path.splitext(base)
  # Same folder, so os.replace is a rename on one filesystem; same extension, so tools that sniff
  # the format from the name still work.
  tmp = os.path.join(folder, f'.{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{ext}')
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path, text: str) -> None:
  with atomic_output(path) as tmp:
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)


def write_bytes(path, data: bytes, fsync: bool = False) -> None:
  """`fsync`: on disk before the rename (a crash right after leaves the complete new file)."""
  with atomic_output(path) as tmp:
    with open(tmp, 'wb') as f:  # mode 0666 less the umask, like every other output
      f.write(data)
      if fsync:
        f.flush()
        os.fsync(f.fileno())


def replace_folder(tmp_dir, out_dir, what: str = "the output") -> None:
  """Moves a finished folder into place; an existing one is replaced only at the end (a reader
  sees the old folder or the new one, and a crash before the end leaves the old one).

  Raises:
    UserError: `out_dir` is a file.
  """
  old = None
  if os.path.exists(out_dir):
    if not os.path.isdir(out_dir):
      raise UserError(f'{out_dir}: is a file; {what} is a folder: pass a folder path')
    old = f'{out_dir}.old-{uuid.uuid4().hex[:8]}'
    os.replace(out_dir, old)
  os.replace(tmp_dir, out_dir)
  if old:
    shutil.rmtree(old, ignore_errors=True)


def check_input_file(path, what: str) -> None:
  """UserError in one line unless `path` is an existing regular file (or a link to one).

  A FIFO, a device or a socket would block `open()` or a decoder forever (or read without end),
  so they are refused before anything opens them; standard input is `-`, never a path here.

  Args:
    path: the file a command is about to read.
    what: what the file should be, for the message ('an audio file', 'an .sjx file').
  """
  path = os.fspath(path)
  try:
    mode = os.stat(path).st_mode
  except FileNotFoundError:
    raise UserError(f'{path}: no such file; check the path') from None
  except OSError as e:
    raise UserError(f'{path}: cannot read: {e.strerror or e}; check the path and permissions'
                    ) from None
  if stat.S_ISDIR(mode):
    raise UserError(f'{path}: is a folder, not {what}; pass the file itself')
  if not stat.S_ISREG(mode):
    raise UserError(f'{path}: is not a regular file (a FIFO, device or socket); pass {what} on '
                    'disk, or - to read standard input')


def default_cache_dir() -> str:
  """The user's cache folder of this project (decoded audio, compiled programs): $SPARSE_JAX_CACHE,
  else ~/.cache/sparse_jax."""
  return os.environ.get('SPARSE_JAX_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'sparse_jax')
