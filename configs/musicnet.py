r"""The sparse codec on MusicNet: the paper's architecture (arXiv 2505.05654).

Presets (`--config=configs/musicnet.py:PRESET`):
  (none)   The seed's system: the paper architecture (45.1M in the paper's count, 42.9M here
           without its two dead heads), trained with energy removal plus the adversarial loss on
           mixes in which each event is dropped with probability 0.5.  G Adam 1e-4, D Adam 1e-3,
           batch 2, 2^17 samples at 22050 Hz, 32 events of 32 dims.  With the collapse study's
           recipe (README, "Representation health"): variance-preserving init of the hidden
           layers, the per-step energy objective and the diversity penalty (weight 0.3).
  paper    The arXiv paper's recipe: the same model, energy removal only (no discriminator),
           U(+-0.02) init, the telescoped energy objective, no diversity penalty.
  tiny     A few-hundred-thousand-parameter model on 2^14-sample windows, for tests on a CPU.

Commands:
  python train.py --config configs/musicnet.py --workdir runs/musicnet \
      --config.data.root=/path/to/musicnet
  python train.py --config configs/musicnet.py:paper --workdir runs/paper \
      --config.data.root=/path/to/musicnet
  python -m sparse_jax info --config configs/musicnet.py:paper

Where and how long: the paper trained its model for about 76 h on one RTX 3060 (steps not
reported).  This codebase has not yet been trained on MusicNet at full size; see the README for
the runs that were made and their figures.
"""
import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.sample_rate = 22050
  c.model.n_samples = 2**17        # the analysed window; events start in its first half
  c.model.window = 2048            # STFT window (periodic Hann); F = window // 2 + 1 bins
  c.model.hop = 256                # STFT hop; an event's time is a frame index
  c.model.n_events = 32            # removal steps per window
  c.model.event_dim = 32
  # Encoder: anti-causal gated dilated conv stack.
  c.model.encoder_channels = 512
  c.model.dilations = (1, 2, 4, 8, 16, 32, 64, 1)
  # Decoder: one MLP per synthesis control.
  c.model.mlp_hidden = 512
  c.model.mlp_blocks = 2
  c.model.n_envelopes = 256        # envelope table rows
  c.model.envelope_spikes = 32     # spikes per energy envelope
  c.model.envelope_points = 128    # envelope points before stretching
  c.model.attack_samples = 8192    # envelope length after stretching (T / 16)
  c.model.n_noise_filters = 64
  c.model.noise_filter_samples = 128
  c.model.noise_expressivity = 2   # noise filters mixed per event
  c.model.n_noise_deformations = 32
  c.model.n_resonances = 4096      # rows of the FFT resonance table
  c.model.instr_expressivity = 4   # resonances mixed per event
  c.model.n_deformations = 256
  c.model.n_rooms = 40             # synthetic room impulse responses (fixed, not trained)
  # The synthesis chain (sparse_jax/blocks.py): the attack first, then any of the others.
  c.model.blocks = ("attack", "resonance", "room")
  c.model.room_seed = 0
  c.model.fine_positioning = True  # sub-hop shift of +-1 hop from an MLP head
  c.model.init_scale = 0.02        # U(-s, s) for dense weights, as the paper's initialiser
  # Hidden layers U(+-sqrt(3 / fan_in)) instead of U(+-init_scale): at 0.02 the event vectors
  # start ~10x below one Adam step of the decoder's biases and collapse (README: representation
  # health).  The paper preset keeps False.
  c.model.fan_in_init = True
  c.model.vector_norm = "none"     # 'unit': candidate vectors at unit RMS; 'centred': centred
                                   # over the window's first-half frames, then unit RMS
  c.model.exclusion_frames = 0     # >0: a window's later events may not take a frame within
                                   # this many - 1 of an earlier one's (0: the paper, no limit)
  c.model.remat = True             # jax.checkpoint the scan body: memory O(1) in the step count
  c.model.gain_trains_stack = True  # False: the gain's gradient trains only the switch head

  c.loss = ml_collections.ConfigDict()
  c.loss.ramp_exponent = 8.0       # target weight on the second half: linspace(1, 0) ** this
  c.loss.start_ramp_frames = 0     # target weight rising linearly over the first frames (losses.py)
  # Steps of the removal loop that training runs and scores (0: all model.n_events).  Encoding
  # always runs model.n_events: the steps share one encoder and decoder, so fewer trained steps
  # train the same networks in proportionally less time per step.
  c.loss.trained_events = 0
  # 'sum': the paper's ||T_w - sum_j C_j||_1 - ||T_w||_1, every event's gradient sees the final
  # residual.  'per_step': the same value, each event scored against the residual it was chosen
  # from (matching pursuit's criterion; see model.decompose).
  c.loss.energy_objective = "per_step"
  # With 'per_step': the price of a bin an event over-subtracts, relative to one it leaves (1: L1).
  c.loss.overshoot_weight = 1.0
  # Weight of the mean squared cosine between the batch's event vectors, in units of the
  # target's L1 (see train_step.py; 0: off, the paper).
  c.loss.diversity_weight = 0.3
  c.loss.adversarial = True
  c.loss.adversarial_weight = 1000.0
  c.loss.event_drop_prob = 0.5     # each event dropped before the discriminator's mix

  c.disc = ml_collections.ConfigDict()
  c.disc.channels = 128
  c.disc.n_layers = 6              # stride-2 layers: 256 first-half frames -> 4
  c.disc.dropout = 0.1

  c.optim = ml_collections.ConfigDict()
  c.optim.generator_lr = 1e-4
  c.optim.discriminator_lr = 1e-3
  c.optim.schedule = "constant"     # or 'cosine': decay to final_lr_fraction at train.num_steps
  c.optim.final_lr_fraction = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 2
  c.train.num_steps = 500_000
  c.train.log_every = 10
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.eval_clips = 8

  c.data = ml_collections.ConfigDict()
  c.data.name = "musicnet"
  c.data.root = ""                 # '' -> error for musicnet: pass --config.data.root
  c.data.cache_dir = ""            # '' -> $SPARSE_JAX_CACHE or ~/.cache/sparse_jax
  c.data.augment = False           # mixing, EQ, dynamics, room, noise (data/augment.py)

  if arg in (None, ""):
    return c
  if arg == "paper":
    # Exactly the paper's recipe: energy removal only, its initialiser and objective.
    c.loss.adversarial = False
    c.model.fan_in_init = False
    c.loss.energy_objective = "sum"
    c.loss.diversity_weight = 0.0
    return c
  if arg == "tiny":
    return tiny(c)
  raise ValueError(f"unknown preset {arg!r} of configs/musicnet.py: use '', 'paper' or 'tiny'")


def tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks every size so a full training step runs in well under a second on a CPU."""
  c.model.n_samples = 2**14
  c.model.window = 256
  c.model.hop = 64
  c.model.n_events = 8
  c.model.event_dim = 8
  c.model.encoder_channels = 32
  c.model.dilations = (1, 2, 4, 1)
  c.model.mlp_hidden = 32
  c.model.mlp_blocks = 1
  c.model.n_envelopes = 16
  c.model.envelope_spikes = 4
  c.model.envelope_points = 32
  c.model.attack_samples = 1024
  c.model.n_noise_filters = 8
  c.model.noise_filter_samples = 32
  c.model.n_noise_deformations = 8
  c.model.n_resonances = 32
  c.model.instr_expressivity = 2
  c.model.n_deformations = 16
  c.model.n_rooms = 4
  c.disc.channels = 16
  c.disc.n_layers = 4              # 128 first-half frames -> 8
  c.train.batch_size = 4
  c.train.num_steps = 20
  c.train.log_every = 5
  c.train.checkpoint_every = 10
  c.train.eval_clips = 4
  c.data.name = "classical"
  return c
