"""The command line (`sparse-jax`, `python -m sparse_jax`): a consumer of the codec layer.

  commands.py   encode, decode, edit, info, report: parsing, checks, summaries
  folders.py    `encode DIR OUT` and `decode DIR OUT`: a tree of files, one bar, failures listed
"""
