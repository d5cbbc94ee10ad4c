"""The codec layer: a trained model as a codec, and its events as data.

  events.py    `EventSet`, the in-memory container of one encoded file
  sjx.py       the `.sjx` file (docs/format.md): read, write, and the grid a file stores
  edit.py      pure EventSet -> EventSet edits, and a hand-editable JSON table
  gains.py     the gain refit and the never-worse guarantee of each window
  runtime.py   `Codec`: loading a model, its compiled functions, rendering, decoding
  encode.py    the streaming encoder (drives a `Codec` window by window)
  onsets.py    the onset rule: events only where notes start (encode --at-onsets, training)
  refine.py    encode-time refinement of a plain encode (imports runtime's codec, sjx, gains)

Consumers live beside it: the report (`sparse_jax/report/`), the command line
(`sparse_jax/cli/`) and the Python API (`sparse_jax/api.py`).
"""
