"""Test-wide setup: 4 virtual CPU devices, so data-parallel code is tested on every machine.

The flag must be set before JAX initialises its backends, which is why it sits here at import
time (pytest imports conftest.py before any test module).
"""
import os
import sys

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_platforms", "cpu")

# Make the repository root importable (configs/, train.py, eval.py live there).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
