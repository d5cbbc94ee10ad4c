"""Folders: `encode DIR OUTDIR` and `decode DIR OUTDIR` mirror a tree of files (DAC's way).

Every matching file under DIR (recursively, in sorted order; hidden files and folders left out)
maps to the same relative path under OUTDIR with the output's extension: `DIR/a/b.flac` ->
`OUTDIR/a/b.sjx`.  One progress bar counts the files.  A file that fails (unreadable audio, a
corrupt or foreign `.sjx`, an existing output without --force, or any other exception) is skipped
and listed at the end: one bad file never stops the batch.  Outputs are written atomically, so a
failed file leaves nothing behind.
"""
import os
import sys

from sparse_jax import audio_io, progress
from sparse_jax.errors import UserError

# What `encode DIR` picks up: the formats libsndfile reads.
AUDIO_IN_EXTENSIONS = audio_io.AUDIO_EXTENSIONS


def check_folders(in_dir: str, out_dir: str) -> None:
  """One line, before the model is loaded, unless OUTDIR can be created (or is a folder)."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise UserError(f"{out_dir}: is a file; with an input folder the output is a folder: pass a "
                    "folder path")
  parent = os.path.dirname(os.path.abspath(out_dir))
  if not os.path.isdir(parent):
    raise UserError(f"{out_dir}: its parent folder {parent} does not exist; create it first")
  if os.path.realpath(in_dir) == os.path.realpath(out_dir):
    raise UserError(f"{out_dir}: is the input folder; choose another output folder")


def plan(in_dir: str, out_dir: str, extensions, out_ext: str) -> list:
  """(source, destination, relative source) for every file of `extensions` under `in_dir`."""
  in_dir, out_dir = os.path.abspath(in_dir), os.path.abspath(out_dir)
  rels = audio_io.find_files(in_dir, skip=out_dir, extensions=tuple(extensions))
  pairs = [(os.path.join(in_dir, rel), os.path.join(out_dir, os.path.splitext(rel)[0] + out_ext),
            rel) for rel in rels]
  if not pairs:
    raise UserError(f"{in_dir}: holds no {', '.join(e.lstrip('.') for e in extensions)} files; "
                    "pass the folder that holds them")
  return pairs


def _reason(exc, src) -> str:
  """The one-line reason a file failed, without repeating its path."""
  if isinstance(exc, UserError):
    text = " ".join(str(exc).split())
  else:  # not a known user mistake: name the exception, still one line
    first = (str(exc).splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first}"
  return text[len(src) + 2:] if text.startswith(src + ": ") else text


def run(pairs, fn, *, force: bool, desc: str, enabled: bool = True) -> list:
  """Calls fn(src, dst) for each pair under one progress bar; returns [(relative path, reason)].

  Existing outputs fail unless `force`; every exception but an interrupt is caught and listed.
  """
  failures = []
  bar = progress.bar(len(pairs), desc, enabled=enabled, unit="file")
  for src, dst, rel in pairs:
    bar.set_postfix_str(rel[-40:], refresh=False)
    try:
      if os.path.lexists(dst) and not force:
        raise UserError(f"{dst}: already exists; pass --force (-f) to overwrite it")
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      fn(src, dst)
    except Exception as e:
      failures.append((rel, _reason(e, src)))
    bar.update(1)
  bar.close()
  return failures


def summarize(n_files: int, failures, out_dir: str, verb: str) -> int:
  """Prints what was done and lists the failures (stderr); the exit status: 1 if any failed."""
  print(f"{verb} {n_files - len(failures)} of {n_files} files into {out_dir}")
  if failures:
    print(f"{len(failures)} file(s) failed and were skipped:", file=sys.stderr)
    for rel, reason in failures:
      print(f"  {rel}: {reason}", file=sys.stderr)
  return 1 if failures else 0
