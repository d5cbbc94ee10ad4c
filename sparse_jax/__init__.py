"""sparse_jax: a sparse, interpretable audio codec in JAX/Flax.

Audio is encoded as a small set of events (a vector plus a time); a physical decoder renders each
event as attack -> resonance -> room, scheduled at its time.  See README.md.

Importing the package changes nothing in the process's environment: the flags the entry points
need are set by them (`xla_flags.py`).
"""

__version__ = "0.1.0"
