"""The one exception type that reaches a user as a single line.

Library code raises `UserError("what is wrong: how to fix it")` for bad input (files, configs,
checkpoints).  The command-line entry points catch it, print the message on one line to stderr and
exit with status 2, so a user never sees a traceback from deep inside JAX for a mistake of theirs.
"""


class UserError(Exception):
  """A problem with the user's input, with the fix in the message."""
