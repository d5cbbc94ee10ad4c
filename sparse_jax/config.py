"""One home for the configuration: every field and its default, the checks, and old runs' configs.

    cfg = config.defaults()        # every field, with its default (what configs/*.py start from)
    config.validate(cfg)           # one line per bad value, before anything is allocated
    cfg = config.from_dict(data)   # a saved config.json or generator file: migrated, ready to use
    config.unknown_field(cfg, "train.batchsize", "configs/quickstart.py")   # a typo's hint

Library code reads fields (`cfg.loss.energy_objective`), never a default of its own: a run saved
before a field existed gets, from `migrate`, the value that reproduces what that run did
(`LEGACY`), and every config built today has every field.
"""
import difflib

import ml_collections

from sparse_jax.errors import UserError

# Fields added after runs were saved, with the value those runs behaved as (before the field,
# the code did this).  `migrate` fills them in, so an old checkpoint or generator file trains,
# encodes and decodes exactly as before.
LEGACY = {
    "model.encoder_input": "linear",
    "model.exclusion_frames": 0,
    "model.fan_in_init": False,
    "model.gain_trains_stack": True,
    "model.vector_norm": "none",
    "loss.energy_objective": "sum",
    "loss.overshoot_weight": 1.0,
    "loss.removal_knee": 0.0,
    "loss.events_at_onsets": False,
    "loss.start_ramp_frames": 0,
    "loss.trained_events": 0,
    "loss.diversity_weight": 0.0,
    "optim.schedule": "constant",
    "optim.final_lr_fraction": 0.1,
    "data.augment": False,
}
# Block settings added after a block first shipped, with the value the code used before them.
BLOCK_LEGACY = {"harmonic": {"n_harmonics": 0}}

# The built-in blocks' settings, which sat flat in `model` before each block had its section.
BLOCK_FIELDS = {
    "attack": ("n_envelopes", "envelope_spikes", "envelope_points", "attack_samples",
               "n_noise_filters", "noise_filter_samples", "noise_expressivity",
               "n_noise_deformations"),
    "resonance": ("n_resonances", "instr_expressivity", "n_deformations"),
    "room": ("n_rooms", "room_seed"),
}


def defaults() -> ml_collections.ConfigDict:
  """Every field, with its default: the paper's architecture (arXiv 2505.05654) at full size,
  trained with the project's recipe (the collapse study's: docs/collapse.md) and the adversarial
  loss, on MusicNet."""
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
  # What the encoder reads: 'linear' |STFT| (the paper), or 'log_centred' (log magnitudes centred
  # per bin over the window: the frames stop sharing one direction).
  c.model.encoder_input = "linear"
  # Decoder: one MLP per synthesis control.
  c.model.mlp_hidden = 512
  c.model.mlp_blocks = 2
  # The synthesis chain (sparse_jax/blocks.py): the attack first, then any of the others; each
  # block's settings are its own section (the fields of its class).
  c.model.chain = ("attack", "resonance", "room")
  c.model.blocks = ml_collections.ConfigDict()
  c.model.blocks.attack = ml_collections.ConfigDict()
  c.model.blocks.attack.n_envelopes = 256        # envelope table rows
  c.model.blocks.attack.envelope_spikes = 32     # spikes per energy envelope
  c.model.blocks.attack.envelope_points = 128    # envelope points before stretching
  c.model.blocks.attack.attack_samples = 8192    # envelope length after stretching (T / 16)
  c.model.blocks.attack.n_noise_filters = 64
  c.model.blocks.attack.noise_filter_samples = 128
  c.model.blocks.attack.noise_expressivity = 2   # noise filters mixed per event
  c.model.blocks.attack.n_noise_deformations = 32
  c.model.blocks.resonance = ml_collections.ConfigDict()
  c.model.blocks.resonance.n_resonances = 4096   # rows of the FFT resonance table
  c.model.blocks.resonance.instr_expressivity = 4  # resonances mixed per event
  c.model.blocks.resonance.n_deformations = 256
  # The pitched string (blocks.Harmonic), in no default chain: name it to use it, e.g.
  # --config.model.chain="('attack', 'harmonic', 'room')".
  c.model.blocks.harmonic = ml_collections.ConfigDict()
  c.model.blocks.harmonic.lowest_midi = 28        # E1, the bass's lowest string
  c.model.blocks.harmonic.n_pitches = 73          # semitones: E1 to E7
  c.model.blocks.harmonic.n_harmonics = 0         # harmonics per pitch (0: all below 0.45 sr)
  c.model.blocks.harmonic.n_bands = 16            # spectral-envelope gains (timbre)
  c.model.blocks.harmonic.shortest_decay_s = 0.1  # 60 dB decay time range
  c.model.blocks.harmonic.longest_decay_s = 8.0
  c.model.blocks.room = ml_collections.ConfigDict()
  c.model.blocks.room.n_rooms = 40               # synthetic room impulses (fixed, not trained)
  c.model.blocks.room.room_seed = 0
  c.model.fine_positioning = True  # sub-hop shift of +-1 hop from an MLP head
  c.model.init_scale = 0.02        # U(-s, s) for dense weights, as the paper's initialiser
  # Hidden layers U(+-sqrt(3 / fan_in)) instead of U(+-init_scale): at 0.02 the event vectors
  # start far below one Adam step of the decoder's biases and collapse (docs/collapse.md).
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
  # With 'per_step' and > 0: each bin's cost is compressed, knee * log(1 + |r| / knee) with the
  # knee this fraction of the window's mean target magnitude (0: plain L1, the paper).  Loud low
  # bins dominate a linear L1; a compressed cost values the quiet ones as a log spectrogram does.
  c.loss.removal_knee = 0.0
  # True: in training, events may start only near an onset of the window (the rule of
  # `encode --at-onsets`, detected in the graph: codec/onsets.allowed_in_graph), so the model
  # learns events that carry a whole note instead of re-attacking it (docs/notes.md).
  c.loss.events_at_onsets = False
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
  return c


def migrate(data: dict) -> dict:
  """A saved config (the dict of its JSON) in today's layout: the blocks' flat settings moved to
  their sections (`model.chain` from the old `model.blocks` list, or the built-in chain), the
  sections of blocks added since, and every `LEGACY` field it lacks filled in."""
  data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
  model = data.setdefault("model", {})
  if not isinstance(model.get("blocks"), dict):  # saved before the blocks had sections
    model["chain"] = tuple(model.pop("blocks", None) or ("attack", "resonance", "room"))
    model["blocks"] = {name: {f: model.pop(f) for f in names if f in model}
                       for name, names in BLOCK_FIELDS.items()}
  # A block added since (the harmonic block) gets its default section: unused unless the chain
  # names it, and a saved chain can only name blocks whose sections it saved.
  model["blocks"] = dict(model["blocks"])
  for name, section in defaults().model.blocks.items():
    model["blocks"].setdefault(name, section.to_dict())
  for name, fields in BLOCK_LEGACY.items():
    model["blocks"][name] = {**fields, **model["blocks"][name]}
  for path, value in LEGACY.items():
    section, field = path.split(".")
    data.setdefault(section, {}).setdefault(field, value)
  return data


def from_dict(data: dict) -> ml_collections.ConfigDict:
  """A config as saved in JSON (config.json, a generator file), migrated, as code expects it."""
  data = migrate(data)
  # JSON turns tuples into lists; the model expects hashable tuples (set before the ConfigDict
  # types its fields: it would turn a tuple assigned to a list field back into a list).
  for field in ("dilations", "chain"):
    data["model"][field] = tuple(data["model"][field])
  return ml_collections.ConfigDict(data)


def validate(cfg) -> None:
  """Refuses bad config values with one line each, before anything is allocated."""
  from sparse_jax import blocks, data, discriminator  # the checks need their names
  from sparse_jax.geometry import Geometry
  m, loss = cfg.model, cfg.loss
  try:
    blocks.check_chain(m)  # first: the checks below read the attack's section
  except ValueError as e:
    raise UserError(f"bad config value: {e}") from None
  half = Geometry.of(m).half
  attack = m.blocks.attack
  per_step = loss.energy_objective == "per_step"
  checks = [
      (m.n_samples > 0 and m.n_samples & (m.n_samples - 1) == 0,
       f"model.n_samples={m.n_samples} must be a power of two (e.g. 131072)"),
      (m.window % m.hop == 0, f"model.window={m.window} must be a multiple of model.hop={m.hop}"),
      (m.n_samples % m.window == 0,
       f"model.n_samples={m.n_samples} must be a multiple of model.window={m.window}"),
      (m.n_events >= 1, f"model.n_events={m.n_events} must be at least 1"),
      (attack.attack_samples % attack.envelope_points == 0
       and attack.attack_samples < m.n_samples,
       f"model.blocks.attack.attack_samples={attack.attack_samples} must be a multiple of "
       f"model.blocks.attack.envelope_points={attack.envelope_points} and shorter than the "
       "window"),
      (m.encoder_input in ("linear", "log_centred"),
       f"model.encoder_input={m.encoder_input!r} must be 'linear' or 'log_centred'"),
      (cfg.train.batch_size >= 1, f"train.batch_size={cfg.train.batch_size} must be >= 1"),
      (cfg.train.num_steps >= 1, f"train.num_steps={cfg.train.num_steps} must be >= 1"),
      (cfg.optim.generator_lr > 0 and cfg.optim.discriminator_lr > 0,
       "optim learning rates must be positive"),
      (loss.energy_objective in ("sum", "per_step"),
       f"loss.energy_objective={loss.energy_objective!r} must be 'sum' or 'per_step'"),
      (cfg.optim.schedule in ("constant", "cosine"),
       f"optim.schedule={cfg.optim.schedule!r} must be 'constant' or 'cosine'"),
      (0 <= loss.start_ramp_frames <= half,
       f"loss.start_ramp_frames={loss.start_ramp_frames} must be in [0, {half}] (the first "
       "half's frames)"),
      (loss.overshoot_weight == 1.0 or (loss.overshoot_weight > 1.0 and per_step),
       f"loss.overshoot_weight={loss.overshoot_weight} must be >= 1, and above 1 only with "
       "loss.energy_objective='per_step'"),
      (loss.removal_knee == 0.0 or (loss.removal_knee > 0.0 and per_step),
       f"loss.removal_knee={loss.removal_knee} must be >= 0, and above 0 only with "
       "loss.energy_objective='per_step'"),
      (isinstance(loss.events_at_onsets, bool),
       f"loss.events_at_onsets={loss.events_at_onsets!r} must be True or False"),
      (0 <= m.exclusion_frames and (2 * m.exclusion_frames - 1) * (m.n_events - 1) < half,
       f"model.exclusion_frames={m.exclusion_frames} must be >= 0 and leave the last of "
       f"{m.n_events} events a frame of the {half} (each closes up to 2 * exclusion_frames - 1)"),
      (0 <= loss.trained_events <= m.n_events,
       f"loss.trained_events={loss.trained_events} must be in [0, model.n_events="
       f"{m.n_events}] (0: all of them)"),
      (loss.diversity_weight >= 0.0,
       f"loss.diversity_weight={loss.diversity_weight} must be >= 0"),
      (0.0 <= loss.event_drop_prob < 1.0,
       f"loss.event_drop_prob={loss.event_drop_prob} must be in [0, 1)"),
      (cfg.data.name in data.DATASETS,
       f"data.name={cfg.data.name!r} must be one of {', '.join(data.DATASETS)}"),
  ]
  for ok, message in checks:
    if not ok:
      raise UserError(f"bad config value: {message}")
  problem = loss.adversarial and discriminator.layers_problem(m, cfg.disc)
  if problem:
    raise UserError(f"bad config value: {problem}")


def fields(cfg, prefix: str = "") -> list:
  """Every field of a ConfigDict as a dotted path ('train.batch_size'), nested dicts included."""
  out = []
  for key in sorted(cfg.keys()):
    path = prefix + key
    out.append(path)
    if hasattr(cfg[key], "keys"):
      out.extend(fields(cfg[key], path + "."))
  return out


def unknown_field(cfg, path: str, source: str) -> str | None:
  """One line for a --config.PATH override that names no field of `cfg`, with the closest one."""
  node = cfg
  for part in path.split("."):
    if not hasattr(node, "keys") or part not in node:
      break
    node = node[part]
  else:
    return None
  close = difflib.get_close_matches(path, fields(cfg), n=1, cutoff=0.6)
  hint = f"did you mean {close[0]}?" if close else f"see {source.split(':')[0]} for its fields"
  return f"--config.{path}: {source} has no field {path!r}; {hint}"
