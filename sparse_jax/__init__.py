"""sparse_jax: a sparse, interpretable audio codec in JAX/Flax.

Audio is encoded as a small set of events (a vector plus a time); a physical decoder renders each
event as attack -> resonance -> room, scheduled at its time.  See README.md.
"""

__version__ = "0.1.0"
