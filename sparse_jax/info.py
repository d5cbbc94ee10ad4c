"""Parameter counts per component, from shapes alone (`nnx.eval_shape`: nothing is allocated)."""
import importlib.util
import os
import time

import jax
import numpy as np
from flax import nnx

from sparse_jax.discriminator import Discriminator
from sparse_jax.errors import UserError
from sparse_jax.model import SparseCodec


def _count(tree) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def reference_dead_weights(model_cfg) -> int:
  """Parameters of the two heads the paper's model computes but never uses.

  `amplitudes` (1 value) and `res_filter` (2 x 64): each a full MLP trunk plus its output layer.
  """
  d, m, blocks = model_cfg.event_dim, model_cfg.mlp_hidden, model_cfg.mlp_blocks
  trunk = d * m + m + blocks * (2 * (m * m + m) + 2 * m)
  return 2 * trunk + m * 1 + (m * 128 + 128)


def parameter_counts(cfg) -> dict:
  """Counts of the generator's components, the discriminator and the fixed room bank."""
  model = nnx.eval_shape(lambda: SparseCodec(cfg.model, nnx.Rngs(0)))
  enc = nnx.state(model.encoder, nnx.Param)
  heads = {k: enc[k] for k in ("to_vectors", "to_switch")}
  body = {k: v for k, v in enc.items() if k not in heads}
  dec = nnx.state(model.decoder, nnx.Param)
  mlp = dec["heads"]
  # Each block's tables, named "<block>/<table>" as their parameters are.
  tables = {f"{block}/{name}": table for block, block_tables in dec.get("tables", {}).items()
            for name, table in block_tables.items()}
  counts: dict = {
      "encoder": _count(body),
      "encoder_heads": _count(heads),
      "decoder_mlp_heads": _count(mlp),
      "decoder_tables": {k: _count(v) for k, v in tables.items()},
  }
  counts["decoder_tables_total"] = sum(counts["decoder_tables"].values())
  total = (counts["encoder"] + counts["encoder_heads"] + counts["decoder_mlp_heads"]
           + counts["decoder_tables_total"])
  counts["generator_total"] = total
  dead = reference_dead_weights(cfg.model)
  counts["paper_count_with_unused_heads"] = total + dead
  counts["note"] = (
      "generator_total leaves out the reference's two unused heads (amplitudes, res_filter: "
      f"{dead:,} parameters); paper_count_with_unused_heads adds them back for comparison with "
      "the paper's 45.1M")
  # The blocks' constants (the room bank), never trained: not parameters.
  counts["block_constants"] = _count(nnx.state(model.decoder, nnx.Not(nnx.Param)))
  disc = nnx.eval_shape(lambda: Discriminator(cfg.model, cfg.disc, nnx.Rngs(0)))
  counts["discriminator"] = _count(nnx.state(disc, nnx.Param))
  return counts


def load_config_file(spec: str):
  """Loads `path/to/config.py[:arg]` the way ml_collections' config_flags does."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"config file {path!r} not found: pass e.g. --config configs/musicnet.py")
  module_spec = importlib.util.spec_from_file_location("_sparse_jax_config", path)
  assert module_spec is not None and module_spec.loader is not None  # a .py file that exists
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(arg or None)
  except ValueError as e:
    raise UserError(str(e)) from None


def parameter_counts_of_file(spec: str) -> dict:
  start = time.time()
  counts = parameter_counts(load_config_file(spec))
  counts["seconds"] = round(time.time() - start, 2)
  return counts
