"""Where the decoder's parameters live, and reading trees saved in the first layout.

Layout 2 (today) keeps every name of a synthesis block in its block's namespace:

    decoder/heads/out_w/<block>/<head>   decoder/heads/out_b/<block>/<head>
    decoder/tables/<block>/<table>       (the fine shift's head: out_w/schedule/fine)

Layout 1 (generator files of format 1, checkpoints written before the blocks had namespaces) had
the same arrays as `decoder/heads/out_w/<head>` and `decoder/<table>`.  A path of layout 2 names
its layout-1 path by dropping the owner, so both readers (`generator.load`, `checkpoint`) move an
old tree with the new tree's paths alone, optimiser states included: nothing here knows a block.

Paths are tuples of strings (dict keys, attribute names and sequence indices, as `keys_of` writes
them).
"""
import jax


def keys_of(path) -> tuple[str, ...]:
  """A JAX key path as strings: ('state', 'g_params', 'decoder', 'tables', ...)."""
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def layout_1(keys: tuple[str, ...]) -> tuple[str, ...]:
  """The layout-1 path of a layout-2 path (the same path where nothing moved)."""
  if "decoder" not in keys:
    return keys
  i = keys.index("decoder") + 1
  tail = keys[i:]
  if tail[:1] == ("tables",) and len(tail) >= 3:
    return keys[:i] + tail[2:]
  if tail[:1] == ("heads",) and len(tail) >= 4 and tail[1] in ("out_w", "out_b"):
    return keys[:i] + tail[:2] + tail[3:]
  return keys


def is_layout_1(saved_paths) -> bool:
  """Whether trees with these paths (tuples of strings) hold a decoder of layout 1: a decoder
  whose tables are not under `tables`."""
  has_decoder = has_tables = False
  for keys in saved_paths:
    if "decoder" in keys:
      has_decoder = True
      i = keys.index("decoder")
      has_tables |= keys[i + 1:i + 2] == ("tables",)
  return has_decoder and not has_tables


def rename_to_layout_1(abstract_tree) -> dict:
  """{layout-1 path: that leaf of `abstract_tree`} for every leaf of a layout-2 tree."""
  return {layout_1(keys_of(path)): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_tree)}


def saved_shaped(saved_tree, wanted: dict, keys: tuple[str, ...] = ()):
  """`saved_tree` (nested dicts and lists, as a checkpoint's metadata) with each leaf replaced by
  `wanted[its path]`, and the branches `wanted` does not name left out: a restore target in the
  saved structure.  None when nothing is wanted."""
  if isinstance(saved_tree, dict):
    out = {k: saved_shaped(v, wanted, keys + (str(k),)) for k, v in saved_tree.items()}
    return {k: v for k, v in out.items() if v is not None} or None
  if isinstance(saved_tree, (list, tuple)):
    items = [saved_shaped(v, wanted, keys + (str(i),)) for i, v in enumerate(saved_tree)]
    return None if all(v is None for v in items) else type(saved_tree)(items)
  return wanted.get(keys)


def moved_to_layout_2(restored_tree, abstract_tree):
  """A tree of layout 1, restored in its saved structure, as `abstract_tree` (layout 2)."""
  flat = {keys_of(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(restored_tree)}
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_tree)
  return jax.tree_util.tree_unflatten(
      treedef, [flat[layout_1(keys_of(path))] for path, _ in leaves])
