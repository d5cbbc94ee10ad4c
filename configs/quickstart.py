r"""A CPU quickstart: a small codec that learns real removal on the embedded classical set.

  python -m sparse_jax build-data          # once: renders the music21 corpus (offline)
  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python eval.py --workdir runs/quickstart

Windows of 2^15 samples (1.5 s at 22050 Hz), 32 events of 16 dims, a 64-channel encoder and a
small decoder; energy removal only (the paper's recipe) with a higher learning rate than the
paper's, which suits the short run.  Trained on the 2-core CPU of the development machine; the
README gives the time and the measured curves.
"""
from configs import musicnet


def get_config(arg: str | None = None):
  c = musicnet.get_config()
  m = c.model
  m.n_samples = 2**15
  m.window = 512
  m.hop = 128                      # 256 frames, 128 of them choosable
  m.n_events = 32
  m.event_dim = 16
  m.encoder_channels = 64
  m.dilations = (1, 2, 4, 8, 16, 1)
  m.mlp_hidden = 64
  m.mlp_blocks = 1
  m.n_envelopes = 32
  m.envelope_spikes = 8
  m.envelope_points = 64
  m.attack_samples = 2048
  m.n_noise_filters = 16
  m.noise_filter_samples = 64
  m.n_noise_deformations = 16
  m.n_resonances = 256
  m.instr_expressivity = 4
  m.n_deformations = 32
  m.n_rooms = 8
  c.loss.adversarial = False
  c.optim.generator_lr = 1e-3
  c.disc.n_layers = 5              # 128 first-half frames -> 4 (used if adversarial is set)
  m.remat = False                  # small enough to keep every step's activations
  c.train.batch_size = 2
  c.train.num_steps = 300
  c.train.log_every = 20
  c.train.checkpoint_every = 250
  c.train.eval_clips = 16
  c.data.name = "classical"
  if arg:
    raise ValueError(f"configs/quickstart.py takes no preset (got {arg!r})")
  return c
