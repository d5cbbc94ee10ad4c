"""`python -m benchmarks.NAME`: each benchmark is an entry point, and needs the entry points' flags."""
import sys

from sparse_jax import xla_flags
from sparse_jax.errors import UserError

xla_flags.set_for_this_process()


def one_line_errors(run, *args) -> int:
  """`run(*args)`, a benchmark's work: a UserError (a bad flag, a missing folder) becomes one
  `error: ...` line on stderr and exit status 2, as every entry point answers bad input."""
  try:
    return run(*args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
