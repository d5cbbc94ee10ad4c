"""A second `sparse-jax encode` compiles nothing: XLA's programs are kept in the user's cache.

`xla_flags.use_compilation_cache` points JAX's persistent cache at $SPARSE_JAX_CACHE/jax.  With
every program kept (a minimum compile time of 0), a program the second process had to compile
would add an entry; none does, and both write the same bytes.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf


@pytest.mark.slow
def test_a_second_encode_compiles_nothing(tmp_path):
  # A small model (the ':tiny' config, untrained) compiles in seconds; the programs are the same
  # kind as the shipped model's.
  from configs import musicnet
  from sparse_jax import generator, train_step
  cfg = musicnet.get_config("tiny")
  model = str(tmp_path / "tiny.npz")
  generator.save(model, cfg, train_step.create_train_state(cfg)[1].g_params, bytes(16), step=0)
  wav = tmp_path / "a.wav"
  sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(22050).astype(np.float32), 22050)
  env = dict(os.environ, SPARSE_JAX_CACHE=str(tmp_path / "cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the test session's own cache
  cache = tmp_path / "cache" / "jax"

  def encode(out):
    done = subprocess.run([sys.executable, "-m", "sparse_jax", "encode", str(wav), str(out),
                           "--model", model, "--quiet"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return set(os.listdir(cache))

  first = encode(tmp_path / "1.sjx")
  assert len(first) > 3  # the programs of the first encode were kept
  assert encode(tmp_path / "2.sjx") == first
  assert (tmp_path / "1.sjx").read_bytes() == (tmp_path / "2.sjx").read_bytes()
  # Off on request: no cache folder at all.
  env["SPARSE_JAX_COMPILE_CACHE"], env["SPARSE_JAX_CACHE"] = "0", str(tmp_path / "off")
  cache = tmp_path / "off" / "jax"
  with pytest.raises(FileNotFoundError):
    encode(tmp_path / "3.sjx")
