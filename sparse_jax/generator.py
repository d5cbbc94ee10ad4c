"""The generator alone: what encoding and decoding need, saved and loaded without training state.

A training checkpoint holds both players and both Adam states (about 4x the generator).  The codec,
the report and the shipped model need only the generator's parameters, so they travel as one
`.npz` file:

    config.json   the run's full config (JSON bytes): rebuilds the model's shapes and constants
    model_id      16 bytes: the id every .sjx file it encodes carries
    step          the training step the parameters come from
    format        FORMAT, bumped if the layout changes (format 1, the first parameter layout
                  of `param_layout.py`, still loads: its names are moved on reading)
    p/<path>      one array per parameter, keyed by its path in the NNX state ('p/encoder/...')

Parameters may be stored as float16 (half the size; `export --dtype float16`), and are computed
in float32 after loading.  Loading builds nothing but shapes (`jax.eval_shape`), checks every
name, shape and value, and never unpickles: a damaged or hostile file is one UserError line.
"""
import hashlib
import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from sparse_jax import files, param_layout
from sparse_jax.errors import UserError

FORMAT = 2
_PARAM_PREFIX = "p/"


def _stored_keys(path) -> tuple[str, ...]:
  # Attribute keys keep their dot (NNX's '.value'), as every file so far has stored them.
  return tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _param_name(path) -> str:
  return _PARAM_PREFIX + "/".join(_stored_keys(path))


def derived_model_id(model_id: bytes, dtype) -> bytes:
  """A stored copy in another precision decodes slightly differently: it gets its own id."""
  if np.dtype(dtype) == np.float32:
    return bytes(model_id)
  return hashlib.sha256(bytes(model_id) + np.dtype(dtype).name.encode()).digest()[:16]


def save(path: str, cfg, g_params, model_id: bytes, step: int, dtype=np.float32) -> int:
  """Writes the generator to `path` (atomically).  Returns the file's size in bytes."""
  dtype = np.dtype(dtype)
  if dtype not in (np.float16, np.float32):
    raise UserError(f"parameters are stored as float16 or float32, not {dtype.name}")
  arrays: dict = {
      "config.json": np.frombuffer(cfg.to_json(indent=2).encode(), np.uint8),
      "model_id": np.frombuffer(derived_model_id(model_id, dtype), np.uint8),
      "step": np.asarray(int(step), np.int64),
      "format": np.asarray(FORMAT, np.int64),
  }
  for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(g_params):
    value = np.asarray(jax.device_get(leaf), np.float32)
    if dtype == np.float16 and np.abs(value).max(initial=0) > np.finfo(np.float16).max:
      raise UserError(f"{_param_name(leaf_path)} exceeds float16's range; export as float32")
    arrays[_param_name(leaf_path)] = value.astype(dtype)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise UserError(f"{path}: its folder {folder} does not exist; create it first")
  with files.atomic_output(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **arrays)
  return os.path.getsize(path)


def _fail(path, what):
  raise UserError(f"{path}: not a usable sparse_jax generator file ({what}); export it again "
                  "(python -m sparse_jax export) or pass another model")


# The first bytes of files a model path is mistaken for, and what to call them.
_SIGNATURES = ((b"SJX\x00", "an .sjx event file"), (b"RIFF", "a WAV/RIFF file"),
               (b"OggS", "an Ogg audio file"), (b"fLaC", "a FLAC file"), (b"ID3", "an MP3 file"),
               (b"\x93NUMPY", "a single .npy array"), (b"\x80", "a Python pickle"),
               (b"{", "a JSON text"))


def _what_file(path: str) -> str:
  """What a file that is not a zip archive looks like, by its first bytes."""
  with open(path, "rb") as f:
    head = f.read(8)
  if not head:
    return "empty"
  for magic, name in _SIGNATURES:
    if head.startswith(magic):
      return name
  return "no archive (unknown content)"


def load(path: str):
  """Reads a generator file.

  Returns:
    (cfg, graphs, g_params, model_id, step): g_params as float32 arrays in the NNX state's layout.

  Raises:
    UserError: missing, damaged, foreign or inconsistent file.
  """
  if not os.path.isfile(path):
    raise UserError(f"{path}: no such model file; pass an exported generator (.npz) or a "
                    "training workdir")
  files.check_input_file(path, "a model file")
  if not zipfile.is_zipfile(path):
    _fail(path, f"it is {_what_file(path)}, not an .npz archive")
  try:
    with np.load(path, allow_pickle=False) as z:
      names = set(z.files)
      for need in ("config.json", "model_id", "step", "format"):
        if need not in names:
          _fail(path, f"no {need!r} entry")
      file_format = int(z["format"])
      if file_format not in (1, FORMAT):
        _fail(path, f"format {file_format}, this version reads 1 to {FORMAT}")
      config_json = json.loads(z["config.json"].tobytes().decode())
      model_id, step = z["model_id"].tobytes(), int(z["step"])
      stored = {name: z[name] for name in names if name.startswith(_PARAM_PREFIX)}
  except UserError:
    raise
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
    _fail(path, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}")
  if len(model_id) != 16:
    _fail(path, "model id is not 16 bytes")
  try:
    from sparse_jax import config, train_step
    cfg = config.from_dict(config_json)
    config.validate(cfg)
    graphs, abstract = train_step.abstract_generator(cfg)
  except UserError:
    raise
  except Exception as e:  # a config this version cannot build
    _fail(path, f"its config does not build: {type(e).__name__}: {str(e)[:120]}")
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  values = []
  for leaf_path, leaf in leaves:
    name = _param_name(leaf_path)
    if file_format == 1:  # the same array under its first-layout name
      name = _PARAM_PREFIX + "/".join(param_layout.layout_1(_stored_keys(leaf_path)))
    value = stored.pop(name, None)
    if value is None:
      _fail(path, f"parameter {name[2:]} is missing")
    if tuple(value.shape) != tuple(leaf.shape) or value.dtype not in (np.float16, np.float32):
      _fail(path, f"parameter {name[2:]} is {value.dtype} {value.shape}, the config needs "
                  f"float {tuple(leaf.shape)}")
    if not np.all(np.isfinite(value)):
      _fail(path, f"parameter {name[2:]} holds non-finite values")
    values.append(jnp.asarray(value, jnp.float32))
  if stored:
    _fail(path, f"unknown parameter {sorted(stored)[0][2:]}")
  g_params = jax.tree_util.tree_unflatten(getattr(treedef, "treedef", treedef), values)
  return cfg, graphs, g_params, model_id, step


def export_workdir(workdir: str, path: str, dtype=np.float16, step: int | None = None) -> dict:
  """The generator of a training run's checkpoint as a generator file.  Returns a summary."""
  from sparse_jax import checkpoint
  cfg, _, g_params, model_id, step = checkpoint.restore_generator(workdir, step)
  n_bytes = save(path, cfg, g_params, model_id, step, dtype)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(g_params))
  return {"path": path, "bytes": n_bytes, "parameters": n_params, "step": step,
          "dtype": np.dtype(dtype).name}
