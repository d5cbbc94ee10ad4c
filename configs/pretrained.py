r"""The shipped model: a mid-size codec for real music and speech at about 3.4 kbit/s.

  python -m sparse_jax build-data                            # the embedded classical renders
  python -m sparse_jax gather-audio ~/.cache/sparse_jax/pretrained_audio   # package recordings
  python train.py --config configs/pretrained.py --workdir runs/pretrained \
      --config.data.root=$HOME/.cache/sparse_jax/pretrained_audio
  python -m sparse_jax export --workdir runs/pretrained sparse_jax/pretrained/model.npz

Windows of 2^16 samples (3 s at 22050 Hz) analysed by a 1024/256 STFT, 32 events of 16 dims per
half window (21.5 events/s; at 8 bits about 3.4 kbit/s), a 192-channel encoder, 2-block MLP
heads of 256 and 512 resonances (5.7M parameters, 11.4 MB as float16); trained on `gather-audio`'s folder (produced game music of four styles, French
speech, the embedded classical renders; the real-audio benchmark's files kept out) with the
augmentation chain of data/augment.py, the collapse study's recipe (variance-preserving init,
per-step objective, diversity penalty 0.3), no discriminator, Adam 1e-3 with a cosine to 1e-4,
batch 16.

Where, how long, what it reached: one NVIDIA H200 (jax 0.11.2), `scripts/train_in_lease.sh`:
2413 steps (150 at the peak rate to time them, then a cosine horizon fitted to the lease), 0.156
s a step, 8.4 min of device time.  Held out: removed 0.432 (sum) / 0.408 (mixed audio) on its
folder's test split, effective rank 14.7 of 16, mean |cos| 0.21, 8 % of events in a window's first
4 frames.  The real-audio benchmark's 20 clips at 2.89 kbit/s: spectral L1 explained 27.8 %
(35.7 % with `--refine 20`, 9.5 s per second of audio on 2 CPU cores; Opus 6k: 40.3 %), log-mel
0.397 (0.341 refined; Opus 6k: 0.596, 8k: 0.558), ViSQOL 3.43 (3.54; Opus 6k: 2.90).  README:
model card.
"""
from configs import musicnet


def get_config(arg: str | None = None):
  c = musicnet.get_config()
  m = c.model
  m.n_samples = 2**16
  m.window = 1024
  m.hop = 256                      # 256 frames, 128 of them choosable
  m.n_events = 32
  m.event_dim = 16
  m.encoder_channels = 192
  m.dilations = (1, 2, 4, 8, 16, 32, 64, 1)
  m.mlp_hidden = 256
  m.mlp_blocks = 2
  m.n_envelopes = 64
  m.envelope_spikes = 16
  m.envelope_points = 128
  m.attack_samples = 4096
  m.n_noise_filters = 32
  m.noise_filter_samples = 128
  m.n_noise_deformations = 32
  m.n_resonances = 512
  m.instr_expressivity = 4
  m.n_deformations = 128
  m.n_rooms = 16
  m.remat = False
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
  if arg:
    raise ValueError(f"configs/pretrained.py takes no preset (got {arg!r})")
  return c
