r"""The shipped model: a mid-size codec for real music and speech at about 3 kbit/s.

  python -m sparse_jax build-data                            # the embedded classical renders
  python -m sparse_jax gather-audio ~/.cache/sparse_jax/pretrained_audio   # package recordings
  python train.py --config configs/pretrained.py --workdir runs/pretrained \
      --config.data.root=$HOME/.cache/sparse_jax/pretrained_audio
  python -m sparse_jax export --workdir runs/pretrained sparse_jax/pretrained/model.npz

Hardware and time: one NVIDIA H200, 2413 steps of batch 16 in 8.4 min of device time
(`scripts/train_in_lease.sh`).  Headline: 27.8 % of the spectral L1 of 20 unseen real recordings
explained at 2.89 kbit/s (docs/model_card.md: the data, the run and every figure).
"""
import ml_collections

from sparse_jax import config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f"configs/pretrained.py takes no preset (got {arg!r})")
  c = config.defaults()
  c.model.n_samples = 2**16        # 3 s windows
  c.model.window = 1024
  c.model.hop = 256                # 256 frames, 128 of them choosable
  c.model.n_events = 32
  c.model.event_dim = 16
  c.model.encoder_channels = 192
  c.model.dilations = (1, 2, 4, 8, 16, 32, 64, 1)
  c.model.mlp_hidden = 256
  c.model.mlp_blocks = 2
  c.model.blocks.attack.n_envelopes = 64
  c.model.blocks.attack.envelope_spikes = 16
  c.model.blocks.attack.envelope_points = 128
  c.model.blocks.attack.attack_samples = 4096
  c.model.blocks.attack.n_noise_filters = 32
  c.model.blocks.attack.noise_filter_samples = 128
  c.model.blocks.attack.n_noise_deformations = 32
  c.model.blocks.resonance.n_resonances = 512
  c.model.blocks.resonance.instr_expressivity = 4
  c.model.blocks.resonance.n_deformations = 128
  c.model.blocks.room.n_rooms = 16
  c.model.remat = False
  c.loss.adversarial = False
  c.disc.n_layers = 5              # 128 first-half frames -> 4 (used if adversarial is set)
  c.optim.generator_lr = 1e-3
  c.optim.schedule = "cosine"
  c.train.batch_size = 16
  c.train.num_steps = 20_000
  c.train.log_every = 50
  c.train.checkpoint_every = 1000
  c.train.eval_clips = 16
  c.data.name = "folder"
  c.data.root = ""                 # gather-audio's folder: pass --config.data.root
  c.data.augment = True
  return c
