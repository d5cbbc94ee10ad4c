r"""The CPU quickstart: a small codec that learns real removal on the embedded classical set.

  python -m sparse_jax build-data          # once: renders the music21 corpus (offline)
  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python eval.py --workdir runs/quickstart

Hardware and time: a 2-core CPU, 1200 steps of batch 4 in 13 min (jax 0.10.2).  Headline: about
half of the held-out clips' spectral L1 removed after 32 events (docs/results.md, with every
seed, variant and command).
"""
import ml_collections

from sparse_jax import config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f"configs/quickstart.py takes no preset (got {arg!r})")
  c = config.defaults()
  c.model.n_samples = 2**15        # 1.5 s windows
  c.model.window = 512
  c.model.hop = 128                # 256 frames, 128 of them choosable
  c.model.n_events = 32
  c.model.event_dim = 16
  c.model.encoder_channels = 64
  c.model.dilations = (1, 2, 4, 8, 16, 1)
  c.model.mlp_hidden = 64
  c.model.mlp_blocks = 1
  c.model.blocks.attack.n_envelopes = 32
  c.model.blocks.attack.envelope_spikes = 8
  c.model.blocks.attack.envelope_points = 64
  c.model.blocks.attack.attack_samples = 2048
  c.model.blocks.attack.n_noise_filters = 16
  c.model.blocks.attack.noise_filter_samples = 64
  c.model.blocks.attack.n_noise_deformations = 16
  c.model.blocks.resonance.n_resonances = 256
  c.model.blocks.resonance.instr_expressivity = 4
  c.model.blocks.resonance.n_deformations = 32
  c.model.blocks.room.n_rooms = 8
  # No two events of a window on one frame: ends the stacks of events at loud frames and the
  # piles at window starts, at no cost in removal.
  c.model.exclusion_frames = 1
  c.model.remat = False            # small enough to keep every step's activations
  c.loss.adversarial = False
  # A steeper second-half ramp than the paper's ** 8: shorter events, fewer stacked at window
  # starts, no less removal.
  c.loss.ramp_exponent = 16.0
  # Training runs the first 16 of the 32 removal steps (encoding runs all 32): the steps share
  # one encoder and decoder and the first 16 do nearly all the removal, so the time buys twice
  # the updates.
  c.loss.trained_events = 16
  c.disc.n_layers = 5              # 128 first-half frames -> 4 (used if adversarial is set)
  c.optim.generator_lr = 1e-3
  c.optim.schedule = "cosine"      # a short run ends on small, steady steps
  # Batch 4 gives more windows per CPU second than batch 2.
  c.train.batch_size = 4
  c.train.num_steps = 1200
  c.train.log_every = 20
  c.train.checkpoint_every = 250
  c.train.eval_clips = 16
  c.data.name = "classical"
  return c
