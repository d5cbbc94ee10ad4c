r"""The collapse study's cheap probe: the tiny config trained on four synthetic clips.

  python -m benchmarks.collapse_tiny                  # every variant, 150 steps (~1 min each)
  python -m benchmarks.collapse_tiny --variants paper,recipe --steps 40

Each variant is the paper's recipe (configs/musicnet.py:paper shrunk by `tiny`, energy loss only,
Adam 1e-3) with a few fields changed.  It prints the effective rank, mean |cos| and removed
fraction of the batch's events at a few steps.  The tiny model collapses within 40 steps, so a
variant that does not stop it here is unlikely to stop it at quickstart size; the quickstart
ablation (benchmarks/ablation.py) is the real test.
"""
import argparse
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import musicnet
from sparse_jax import train_step
from tests import synthetic

# name -> {dotted config field: value}, on top of the paper's recipe.
VARIANTS = {
    "paper": {},
    "lr_1e-4": {"optim.generator_lr": 1e-4},
    "per_step": {"loss.energy_objective": "per_step"},
    "gain_not_in_stack": {"model.gain_trains_stack": False},
    "log_centred_input": {"model.encoder_input": "log_centred"},
    "centred_vectors": {"model.vector_norm": "centred", "model.fan_in_init": True},
    "fan_in": {"model.fan_in_init": True},
    "fan_in+per_step": {"model.fan_in_init": True, "loss.energy_objective": "per_step"},
    "recipe": {"model.fan_in_init": True, "loss.energy_objective": "per_step",
               "loss.diversity_weight": 0.3},
}


def paper_tiny_config(changes: dict):
  cfg = musicnet.tiny(musicnet.get_config("paper"))
  cfg.model.remat = False
  cfg.optim.generator_lr = 1e-3
  for path, value in changes.items():
    section, field = path.split(".")
    cfg[section][field] = value
  return cfg


def run(changes: dict, steps: int, report_at) -> list[tuple]:
  cfg = paper_tiny_config(changes)
  graphs, state = train_step.create_train_state(cfg)
  n = cfg.model.n_samples
  clips = jnp.asarray(np.stack([synthetic.note_sequence(n, cfg.model.sample_rate, n_notes=3,
                                                        seed=s) for s in range(4)]))
  step = jax.jit(functools.partial(train_step.train_step, graphs=graphs, cfg=cfg))
  rows = []
  for i in range(steps):
    state, m = step(state, clips)
    if i in report_at:
      rows.append((i, float(m["effective_rank"]), float(m["mean_abs_cosine"]),
                   float(m["removed_fraction"])))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--steps", type=int, default=150)
  args = parser.parse_args(argv)
  names = args.variants.split(",")
  unknown = [n for n in names if n not in VARIANTS]
  if unknown or args.steps < 1:
    print(f"error: unknown variant(s) {unknown} (choose from {', '.join(VARIANTS)}) or "
          f"--steps < 1", file=sys.stderr)
    sys.exit(2)
  report_at = sorted({0, args.steps // 4, args.steps // 2, args.steps - 1})
  print(f"tiny config, 4 synthetic clips, {args.steps} steps; at steps {report_at}: "
        "effective rank / mean |cos| / removed fraction")
  for name in names:
    start = time.time()
    rows = run(VARIANTS[name], args.steps, set(report_at))
    cells = "  ".join(f"{r:5.2f} / {c:.2f} / {x:5.2f}" for _, r, c, x in rows)
    print(f"{name:20s} {cells}   ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
  main()
