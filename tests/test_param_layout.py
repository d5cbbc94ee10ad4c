"""Checkpoints and generator files of the first parameter layout keep loading, bit for bit.

Layout 1 kept the decoder's heads as `decoder/heads/out_w/<head>` and its tables as
`decoder/<table>`; today each lives under its block (`param_layout.py`).  The shipped model is a
format-1 generator file (its golden event, `test_pretrained.py`, reads it through the move); the
checkpoint below is written here in layout 1, with the same container types an old run saved.
"""
import jax
import numpy as np
import pytest
from flax import nnx

from configs import musicnet
from sparse_jax import checkpoint, generator, param_layout, train_step


def as_layout_1(tree):
  """`tree` with every decoder state (parameters, Adam's moments) moved back to layout 1."""

  def move(state):
    if not (isinstance(state, nnx.State) and "decoder" in state):
      return state
    dec = state["decoder"]
    for block_tables in dict(dec.pop("tables")).values():
      for name, table in block_tables.items():
        dec[name] = table
    for kind in ("out_w", "out_b"):
      by_owner = dict(dec["heads"].pop(kind))
      dec["heads"][kind] = nnx.State({h: v for heads in by_owner.values()
                                      for h, v in heads.items()})
    return state

  is_state = lambda x: isinstance(x, nnx.State) and "decoder" in x
  return jax.tree.map(move, tree, is_leaf=is_state)


def test_layout_1_paths_drop_the_owner():
  assert param_layout.layout_1(("g", "decoder", "tables", "attack", "envelopes", ".value")) == (
      "g", "decoder", "envelopes", ".value")
  assert param_layout.layout_1(("decoder", "heads", "out_w", "schedule", "fine", "value")) == (
      "decoder", "heads", "out_w", "fine", "value")
  for unmoved in (("decoder", "heads", "w_in", "value"), ("encoder", "tables", "a", "b")):
    assert param_layout.layout_1(unmoved) == unmoved
  assert param_layout.is_layout_1([("decoder", "envelopes"), ("decoder", "heads", "w1")])
  assert not param_layout.is_layout_1([("decoder", "tables", "attack", "envelopes")])
  assert not param_layout.is_layout_1([("encoder", "w")])


@pytest.mark.slow
def test_a_layout_1_checkpoint_restores_and_exports_unchanged(tmp_path):
  cfg = musicnet.get_config("tiny")
  _, state = train_step.create_train_state(cfg)
  workdir = str(tmp_path / "old_run")
  checkpoint.save_config(workdir, cfg)
  ckpt = checkpoint.Checkpointer(workdir)
  old = as_layout_1(jax.tree.map(lambda x: x, {"state": state,
                                               "data_step": np.asarray(7, np.int64)}))
  assert "envelopes" in old["state"].g_params["decoder"]  # really the old layout
  assert "envelopes" in old["state"].g_opt[0].mu["decoder"]
  ckpt.save(3, old, force=True)
  ckpt.close()

  same = lambda a, b: all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in
                          zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
  # The generator alone (the codec's partial read), and the whole training state (resume).
  _, _, g_params, _, step = checkpoint.restore_generator(workdir)
  assert step == 0 and same(g_params, state.g_params)
  _, _, restored, extra = checkpoint.restore_train_state(workdir)
  assert extra["data_step"] == 7
  assert jax.tree.structure(restored) == jax.tree.structure(state) and same(restored, state)
  # Exported, it is a file of today's format, which loads to the same arrays.
  path = str(tmp_path / "old_run.npz")
  generator.export_workdir(workdir, path, dtype=np.float32)
  with np.load(path) as z:
    assert int(z["format"]) == generator.FORMAT == 2
    assert "p/decoder/tables/attack/envelopes/.value" in z.files
  assert same(generator.load(path)[2], state.g_params)


def test_the_shipped_model_is_a_format_1_file_read_through_the_move():
  from sparse_jax import pretrained
  with np.load(pretrained.MODEL_PATH) as z:
    assert int(z["format"]) == 1 and "p/decoder/envelopes/.value" in z.files
    stored = z["p/decoder/heads/out_w/mixes/.value"]
  g_params = generator.load(pretrained.MODEL_PATH)[2]
  np.testing.assert_array_equal(
      np.asarray(g_params["decoder"]["heads"]["out_w"]["resonance"]["mixes"][...]),
      stored.astype(np.float32))
