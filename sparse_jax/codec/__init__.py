"""The codec layer: encoded events as data, their `.sjx` file format, and edits on them.

`events.EventSet` is the in-memory container, `sjx` reads and writes it as a compact binary file,
and `edit` holds pure EventSet -> EventSet transformations (and a hand-editable JSON table).
"""
