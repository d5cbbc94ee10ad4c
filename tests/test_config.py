"""One home for the configuration (sparse_jax/config.py): defaults, migration, checks."""
import ast
import json
import os

import numpy as np
import pytest

from configs import ljspeech, musicnet, pretrained, quickstart
from sparse_jax import checkpoint, config
from sparse_jax import pretrained as shipped
from sparse_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _saved(cfg) -> dict:
  return json.loads(cfg.to_json())


def test_every_config_file_has_every_field_of_the_defaults():
  want = config.fields(config.defaults())
  for cfg in (musicnet.get_config(), musicnet.get_config("paper"), musicnet.get_config("tiny"),
              quickstart.get_config(), pretrained.get_config(), ljspeech.get_config()):
    assert config.fields(cfg) == want
    config.validate(cfg)


def test_the_shipped_models_config_migrates_to_what_it_trained_as():
  """The shipped model's config.json predates four fields and the blocks' sections: migration
  moves its flat block settings into sections and gives each missing field the value the code
  used before the field existed."""
  with np.load(shipped.MODEL_PATH) as z:
    saved = json.loads(z["config.json"].tobytes().decode())
  assert "blocks" not in saved["model"] and saved["model"]["n_resonances"] == 512  # the old layout
  for field in ("exclusion_frames", "encoder_input"):
    assert field not in saved["model"]
  assert "trained_events" not in saved["loss"] and "overshoot_weight" not in saved["loss"]
  cfg = config.from_dict(saved)
  assert cfg.model.chain == ("attack", "resonance", "room") and cfg.model.exclusion_frames == 0
  assert cfg.model.blocks.resonance.n_resonances == 512 and "n_resonances" not in cfg.model
  assert cfg.loss.trained_events == 0 and cfg.loss.overshoot_weight == 1.0
  assert cfg.model.encoder_input == "linear"
  # Everything else is configs/pretrained.py's (the run overrode its root and step count).
  recipe = _saved(pretrained.get_config())
  for section in ("model", "loss", "optim", "disc"):
    assert _saved(cfg)[section] == recipe[section], section
  config.validate(cfg)
  assert "blocks" not in saved["model"]  # the saved dict itself is untouched


def test_a_config_of_the_flat_layout_migrates_to_todays():
  """A quickstart config as saved before the blocks had sections (flat settings, `model.blocks`
  the chain) loads as today's quickstart config."""
  today = _saved(quickstart.get_config())
  flat = {s: (dict(v) if isinstance(v, dict) else v) for s, v in today.items()}
  model = flat["model"] = dict(today["model"])
  model["blocks"] = list(model.pop("chain"))
  for name in config.BLOCK_FIELDS:  # the blocks of those days (the harmonic block came later)
    model.update(today["model"]["blocks"][name])
  assert _saved(config.from_dict(flat)) == today


def test_a_config_saved_today_loads_unchanged_and_keeps_its_model_id():
  today = _saved(quickstart.get_config())
  assert _saved(config.from_dict(today)) == today
  assert checkpoint.model_id(today, 7) == checkpoint.model_id(quickstart.get_config(), 7)
  # A field missing from an older save changes nothing its id was computed from.
  older = {s: (dict(v) if isinstance(v, dict) else v) for s, v in today.items()}
  del older["loss"]["trained_events"]
  assert checkpoint.model_id(older, 7) != checkpoint.model_id(today, 7)
  assert config.from_dict(older).loss.trained_events == 0  # the legacy value, not 16


def test_bad_values_and_unknown_fields_are_one_line():
  cfg = musicnet.get_config("tiny")
  cfg.loss.energy_objective = "mean"
  with pytest.raises(UserError, match="loss.energy_objective='mean' must be 'sum' or 'per_step'"):
    config.validate(cfg)
  cfg = musicnet.get_config("tiny")
  cfg.model.encoder_input = "log"
  with pytest.raises(UserError, match="model.encoder_input"):
    config.validate(cfg)
  message = config.unknown_field(cfg, "train.batchsize", "configs/musicnet.py:tiny")
  assert "did you mean train.batch_size?" in message
  assert config.unknown_field(cfg, "train.batch_size", "x") is None


def test_library_code_reads_fields_and_holds_no_defaults_of_its_own():
  """No `cfg.X.get("field", default)` outside config.py: a default lives in one place."""
  offenders = []
  for folder, _, names in os.walk(os.path.join(ROOT, "sparse_jax")):
    for name in names:
      if not name.endswith(".py") or name == "config.py":
        continue
      path = os.path.join(folder, name)
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get" and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
            and "cfg" in ast.unparse(node.func.value).split(".")[0]):
          offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
      for node in ast.walk(tree):  # `m.get(...)` with m = cfg.model, `cfg.loss.get(...)`
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get" and ast.unparse(node.func.value).startswith(
                ("cfg.", "m.", "config."))):
          offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
  assert not offenders, offenders
