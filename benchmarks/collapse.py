r"""Where do the event vectors lose their diversity?  Effective rank layer by layer.

  python -m benchmarks.collapse --workdir runs/quickstart            # the latest checkpoint
  python -m benchmarks.collapse --config configs/quickstart.py       # at initialisation

On held-out clips of the run's data, it prints the effective rank (see
`sparse_jax/representation.py`) and the mean |cosine| of what each stage computes for the
first-half frames of the first removal step (the clips' own spectrograms): the input spectrum
(linear and log), the encoder's input projection, its stack output, the candidate vectors of
every frame, then the vectors the removal loop actually chose over all its steps, and the decoder
heads' first layer for them.  It also compares the vectors' part of that first layer with its bias
(at the paper's init scale the vectors start ten times below one Adam step of the bias), and
splits the candidate vectors into the vector head's bias and the input-dependent part.
`--json PATH` writes the figures.
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from sparse_jax import checkpoint, data, representation, signal, train_step
from sparse_jax.errors import UserError
from sparse_jax.geometry import Geometry
from sparse_jax.model import encode_audio

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config (for an untrained model).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir (latest checkpoint).")
_CLIPS = flags.DEFINE_integer("clips", 8, "Held-out clips.")
_JSON = flags.DEFINE_string("json", None, "Write the figures here too.")


def _figures(x_ExD) -> dict:
  x = np.asarray(x_ExD, np.float32).reshape(-1, np.shape(x_ExD)[-1])
  return {"effective_rank": round(float(representation.effective_rank(x)), 3),
          "mean_abs_cosine": round(float(representation.mean_abs_cosine(x[:2000])), 3),
          "dims": int(x.shape[-1])}


def layer_ranks(cfg, graphs, g_params, clips_BxT: np.ndarray) -> dict:
  """The effective rank and mean |cos| of each stage (see the module docstring)."""
  m = cfg.model
  model = train_step.merge_generator(graphs, g_params)
  enc = model.encoder
  spec = signal.stft_magnitude(jnp.asarray(clips_BxT), m.window, m.hop)
  half = Geometry.of(m).half
  frames_BxHxF = jnp.swapaxes(spec[:, :, :half], 1, 2)
  proj = enc.proj(jnp.swapaxes(spec, 1, 2))[:, :half]
  feats = enc.features(spec)
  vectors = enc.to_vectors(feats)
  bias = np.asarray(enc.to_vectors.bias[...])  # type: ignore[index]  # this Linear has one
  dec = jax.jit(lambda p, a: encode_audio(train_step.merge_generator(graphs, p), a, m))(
      g_params, jnp.asarray(clips_BxT))
  chosen = np.asarray(dec.vectors_BxExD).reshape(-1, m.event_dim)
  heads = model.decoder.heads
  x = jnp.einsum("bd,hdm->bhm", jnp.asarray(chosen), heads.w_in[...]) + heads.b_in[...]
  out = {
      "input |STFT| frames": _figures(frames_BxHxF),
      "input log |STFT| frames": _figures(jnp.log(frames_BxHxF + 1e-4)),
      "encoder input projection": _figures(proj),
      "encoder stack output (all frames)": _figures(feats),
      "candidate vectors (all frames)": _figures(vectors),
      "chosen vectors (all steps)": _figures(chosen),
      "decoder heads' first layer (chosen)": _figures(np.swapaxes(np.asarray(x), 0, 1).reshape(
          -1, x.shape[-1])),
      # How loudly the vector speaks in the decoder against the heads' first-layer bias (mean
      # over heads): at the paper's scales it starts ~10x below what one Adam step moves the bias.
      "decoder first layer: mean |W_in v| (chosen)": round(float(np.linalg.norm(
          x - np.asarray(heads.b_in[...])[None], axis=-1).mean()), 4),
      "decoder first layer: mean |b_in|": round(float(np.linalg.norm(
          np.asarray(heads.b_in[...]), axis=-1).mean()), 4),
      "vector head bias norm": round(float(np.linalg.norm(bias)), 4),
      "candidate vectors' mean norm without bias": round(float(np.linalg.norm(
          np.asarray(vectors) - bias, axis=-1).mean()), 4),
  }
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    if _WORKDIR.value:
      cfg, graphs, g_params, _, step = checkpoint.restore_generator(_WORKDIR.value)
      label = f"{_WORKDIR.value} step {step}"
    elif _CONFIG.value is not None:
      cfg = _CONFIG.value
      graphs, state = train_step.create_train_state(cfg)
      g_params, label = state.g_params, "untrained"
    else:
      raise UserError("pass --workdir DIR (a trained run) or --config FILE (untrained)")
    source = data.make_source(cfg.data, sample_rate=cfg.model.sample_rate, split="test")
    clips = data.eval_clips(source, _CLIPS.value, cfg.model.n_samples, seed=0)
    figures = layer_ranks(cfg, graphs, g_params, clips)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"{label}, {len(clips)} held-out clips")
  for name, value in figures.items():
    if isinstance(value, dict):
      print(f"  {name:42s} rank {value['effective_rank']:6.2f} / {value['dims']:<4d} "
            f"mean |cos| {value['mean_abs_cosine']:.3f}")
    else:
      print(f"  {name:42s} {value}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"model": label, "figures": figures}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
