"""`python -m benchmarks.NAME`: each benchmark is an entry point, and needs the entry points' flags."""
from sparse_jax import xla_flags

xla_flags.set_for_this_process()
