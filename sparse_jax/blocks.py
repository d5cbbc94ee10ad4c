"""Synthesis blocks: each one owns its MLP heads, its tables, its controls and its signal.

An event is rendered by a chain of blocks, each mixing its input (dry) with a filtered copy (wet),
then scheduled at its time (magenta/ddsp's processors: `get_controls`, `get_signal`).  A block is
one frozen dataclass whose fields are its settings (its config section `model.blocks.<name>`),
and declares

    heads()                            {head name: output shape per event}
    tables(geo, init)                  {table name: initial array} (trained; `init.uniform(s, shape)`
                                       draws U(-s, s) from the model's next key, `init.key()` a key)
    constants(geo)                     {constant name: array} (never trained, never checkpointed:
                                       made deterministically from its settings, e.g. a seeded bank)
    lookups                            {head name: name of the rows it mixes} (ReLU-weighted mixes
                                       of a table's or a constant bank's rows; read by the report)
    controls(heads, tables, geo)       {control name: batched array}
    render(x, controls, consts, geo)   one event's signal from the previous block's; `consts` are
                                       this block's own constants
    read_pitch(controls)               (MIDI note, sounded) of each event, for a block with a pitch
                                       control (`Harmonic`); None for the others

`geo` carries the shared sizes (window, hop, frames, bins, sample rate).  `model.chain` (default
`DEFAULT_BLOCKS`) lists the chain, so adding a block is one class, `register`ed, one config
section and its name in the chain.  Every name a block declares lives in its block's namespace:
its heads are the parameters `decoder/heads/out_w/<block>/<head>`, its tables
`decoder/tables/<block>/<table>`, its constants `decoder/constants/<block>/<name>`, and its
controls reach only its own render; two blocks may use the same words without touching each other,
and a block may not take a name the schedule uses (`RESERVED`).  The decoder, the train step, the
checkpoint and the generator file know nothing block-specific.  The attack comes first (it makes
the excitation); the others can be left out (`--config.model.chain="('attack', 'resonance')"`: no
room).  Heads and tables keep the order of the chain, which fixes the parameters' initialisation.

Shape letters as in `geometry.py`.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sparse_jax import rooms, signal, synth
from sparse_jax.encoder import uniform_init
from sparse_jax.geometry import Geometry


class TableInit:
  """What a block's `tables` draws its initial values from: the model's parameter keys, in the
  order the blocks ask (which fixes every table's initial values)."""

  def __init__(self, rngs):
    self._rngs = rngs

  def key(self):
    return self._rngs.params()

  def uniform(self, scale: float, shape, key=None):
    return uniform_init(scale)(self.key() if key is None else key, shape)

DEFAULT_BLOCKS = ("attack", "resonance", "room")


class Block:
  """What every block has unless it says otherwise: no tables, no lookups, no constants.

  A block is a frozen dataclass whose fields are its settings, the keys of its config section
  `model.blocks.<name>` (big_vision-style kwargs): it reads nothing else of the config.  The
  shared sizes (window, hop, frames, bins, the sample rate) come in `geo`.
  """
  name = ""
  lookups: dict = {}

  def heads(self) -> dict:
    return {}

  def tables(self, geo, init) -> dict:
    del geo, init
    return {}

  def constants(self, geo) -> dict:
    del geo
    return {}

  def read_pitch(self, controls):
    """A block with a pitch control returns (MIDI note (B,), sounded (B,)) from its batched
    controls; the others return None (their events' pitch is heard: `notes.py`)."""
    del controls
    return None


def _mix(weights_BxJ, table_RxQ):
  """The lookup: a ReLU-weighted, unnormalised mix of a table's rows (a linear layer whose input
  is rectified)."""
  return jax.nn.relu(weights_BxJ) @ table_RxQ


@dataclasses.dataclass(frozen=True)
class Attack(Block):
  """A noise burst: a train of spikes, filtered by C noise filters under deformation masks."""
  n_envelopes: int                 # envelope table rows
  envelope_spikes: int             # spikes per energy envelope
  envelope_points: int             # envelope points before stretching
  attack_samples: int              # envelope length after stretching
  n_noise_filters: int
  noise_filter_samples: int
  noise_expressivity: int          # noise filters mixed per event
  n_noise_deformations: int
  name = "attack"
  lookups = {"envelopes": "envelopes", "noise_resonance": "noise_filters",
             "noise_deformations": "noise_deformations"}

  def heads(self):
    return {"envelopes": (self.n_envelopes,),
            "noise_resonance": (self.noise_expressivity, self.n_noise_filters),
            "noise_deformations": (self.n_noise_deformations,),
            "noise_mixes": (2,)}

  def tables(self, geo, init):
    return {"envelopes": init.uniform(0.02, (self.n_envelopes,
                                             self.envelope_spikes * self.envelope_points)),
            "noise_filters": init.uniform(1.0, (self.n_noise_filters, self.noise_filter_samples)),
            "noise_deformations": init.uniform(0.02, (self.n_noise_deformations,
                                                      self.noise_expressivity * geo.n_frames))}

  def controls(self, heads, tables, geo):
    b = heads["envelopes"].shape[0]
    return {
        "envelope_IxP": _mix(heads["envelopes"], tables["envelopes"]).reshape(
            b, self.envelope_spikes, self.envelope_points),
        "noise_filters_CxL": _mix(heads["noise_resonance"],
                                  signal.unit_norm(tables["noise_filters"])),
        "noise_deform_CxN": _mix(heads["noise_deformations"], tables["noise_deformations"]
                                 ).reshape(b, -1, geo.n_frames),
        "noise_mix_2": heads["noise_mixes"],
    }

  def render(self, x, controls, consts, geo):
    del x, consts  # the chain's source
    filter_len = controls["noise_filters_CxL"].shape[-1]
    # The attack is short (T/16 by default), so its convolutions use small FFTs.
    impulse_A = jnp.pad(synth.energy_impulse(controls["envelope_IxP"], self.attack_samples),
                        (0, filter_len - 1))
    noise_CxA = signal.fft_convolve(impulse_A, controls["noise_filters_CxL"])
    masks_CxA = synth.deformation_masks(controls["noise_deform_CxN"],
                                        geo.n_samples)[:, :impulse_A.shape[0]]
    return synth.dry_wet(impulse_A, jnp.sum(noise_CxA * masks_CxA, axis=0),
                         controls["noise_mix_2"])


@dataclasses.dataclass(frozen=True)
class Resonance(Block):
  """The instrument: the input convolved with C resonances, each under a deformation mask."""
  n_resonances: int                # rows of the FFT resonance table
  instr_expressivity: int          # resonances mixed per event
  n_deformations: int
  name = "resonance"
  lookups = {"resonances": "resonances", "deformations": "deformations"}

  def heads(self):
    return {"resonances": (self.instr_expressivity, self.n_resonances),
            "deformations": (self.n_deformations,),
            "mixes": (2,)}

  def tables(self, geo, init):
    # The resonance table is sparse at init: U(-6, 6) on about 1% of its entries.
    k_values, k_mask = jax.random.split(init.key())
    res = init.uniform(6.0, (self.n_resonances, 3 * geo.n_bins), key=k_values)
    return {"resonances": res * jax.random.bernoulli(k_mask, 0.01, res.shape),
            "deformations": init.uniform(0.02, (self.n_deformations,
                                                self.instr_expressivity * geo.n_frames))}

  def controls(self, heads, tables, geo):
    b = heads["resonances"].shape[0]
    return {
        "resonance_params_Cx3F": _mix(heads["resonances"], tables["resonances"]),
        "deform_CxN": _mix(heads["deformations"], tables["deformations"]).reshape(
            b, -1, geo.n_frames),
        "mix_2": heads["mixes"],
    }

  def render(self, x, controls, consts, geo):
    del consts
    dry_T = _to_window(x, geo)
    resonances_CxT = synth.fft_resonances(controls["resonance_params_Cx3F"], geo.n_samples,
                                          geo.window)
    # Output samples [0, T) of the linear convolution need an FFT of at least T + A - 1; the
    # nearest 2^k * 3^j size is much smaller than 2T.
    conv_len = synth.smooth_size(geo.n_samples + x.shape[0] - 1)
    wet_CxT = signal.fft_convolve(dry_T[None], resonances_CxT, fft_len=conv_len)
    masks_CxT = synth.deformation_masks(controls["deform_CxN"], geo.n_samples)
    return synth.dry_wet(dry_T, jnp.sum(wet_CxT * masks_CxT, axis=0), controls["mix_2"])


@dataclasses.dataclass(frozen=True)
class Harmonic(Block):
  """A pitched string: the input rings a harmonic comb at one equal-tempered pitch, shaped by a
  spectral envelope (the timbre) and a decay, so that an event carries a note a musician reads.

  Source and filter: the comb is a row of a constant bank (every harmonic of each of `n_pitches`
  semitones from `lowest_midi`); the envelope is `n_bands` gains log-spaced in frequency; the
  decay a 60 dB decay time between `shortest_decay_s` and `longest_decay_s`.  The pitch is a hard
  choice (`synth.hard_choice`: one pitch forward, every pitch's softmax gradient backward): a
  continuous f0 learns poorly from spectral losses (a partial one bin off has no gradient
  towards the right bin), a choice among the bank's pitches learns like a lookup.  The event's
  MIDI note is `read_pitch`.
  """
  lowest_midi: int                 # the bank's lowest pitch (MIDI note number)
  n_pitches: int                   # semitones in the bank
  n_harmonics: int                 # harmonics per pitch (0: every one below 0.45 x the rate)
  n_bands: int                     # spectral-envelope gains (timbre)
  shortest_decay_s: float          # 60 dB decay time range
  longest_decay_s: float
  name = "harmonic"

  def __post_init__(self):
    # Refused when the chain is built (`config.validate` turns it into one line), before any bank.
    ok = (0 <= self.lowest_midi and 1 <= self.n_pitches and self.lowest_midi + self.n_pitches <= 128
          and self.n_harmonics >= 0 and self.n_bands >= 2
          and 0 < self.shortest_decay_s <= self.longest_decay_s)
    if not ok:
      raise ValueError(f"model.blocks.harmonic: {dataclasses.asdict(self)}: needs MIDI notes "
                       "0-127 (lowest_midi >= 0, n_pitches >= 1), n_harmonics >= 0, n_bands >= 2 "
                       "and 0 < shortest_decay_s <= longest_decay_s")

  def heads(self):
    return {"pitch": (self.n_pitches,), "timbre": (self.n_bands,), "decay": (1,),
            "mixes": (2,)}

  def constants(self, geo):
    # Applied in the frequency domain at 2T, as the room: the ring is as long as the window.
    midi_P = self.lowest_midi + np.arange(self.n_pitches)
    combs_PxT = synth.harmonic_combs(midi_P, geo.n_samples, geo.sample_rate, self.n_harmonics)
    spectra = np.fft.rfft(combs_PxT.astype(np.float64), n=2 * geo.n_samples)
    return {"combs_PxQ": spectra.astype(np.complex64),
            "bands_MxQ": synth.band_interpolation(self.n_bands, geo.n_samples + 1,
                                                  geo.sample_rate)}

  def controls(self, heads, tables, geo):
    del tables, geo
    ratio = self.longest_decay_s / self.shortest_decay_s
    return {"pitch_P": synth.hard_choice(heads["pitch"]),
            "timbre_M": jax.nn.softplus(heads["timbre"]),
            "decay_s": self.shortest_decay_s * ratio ** jax.nn.sigmoid(heads["decay"][:, 0]),
            "mix_2": heads["mixes"]}

  def render(self, x, controls, consts, geo):
    dry_T, size = _to_window(x, geo), 2 * geo.n_samples
    combs = consts["combs_PxQ"]
    comb_Q = controls["pitch_P"].astype(combs.dtype) @ combs
    envelope_Q = controls["timbre_M"] @ consts["bands_MxQ"]
    ring_T = jnp.fft.irfft(jnp.fft.rfft(dry_T, n=size) * comb_Q * envelope_Q,
                           n=size)[:geo.n_samples]
    # 60 dB (a factor 1000, ln 1000 = 6.91) over decay_s seconds, from the event's start.
    t_T = np.arange(geo.n_samples, dtype=np.float32) / geo.sample_rate
    wet_T = ring_T * jnp.exp(-6.907755 * t_T / controls["decay_s"])
    return synth.dry_wet(dry_T, wet_T, controls["mix_2"])

  def read_pitch(self, controls):
    """(MIDI note of each event, whether the event sounds it): the chosen pitch, sounded when
    the block passes at least half its output through the comb."""
    midi_B = self.lowest_midi + jnp.argmax(controls["pitch_P"], axis=-1)
    sounding_B = jax.nn.softmax(controls["mix_2"], axis=-1)[:, 1] >= 0.5
    return midi_B, sounding_B


@dataclasses.dataclass(frozen=True)
class Room(Block):
  """A mix of the fixed bank of room impulse responses (`rooms.py`; constants, not tables)."""
  n_rooms: int                     # synthetic room impulse responses (fixed, not trained)
  room_seed: int
  name = "room"
  lookups = {"room_choice": "rooms"}

  def heads(self):
    return {"room_choice": (self.n_rooms,), "room_mix": (2,)}

  def constants(self, geo):
    # The bank's rfft at 2T: the room is applied in the frequency domain (render).
    return {"spectra_RxQ": rooms.room_bank_spectra(self.n_rooms, geo.n_samples, geo.sample_rate,
                                                   self.room_seed)}

  def controls(self, heads, tables, geo):
    return {"room_weights_R": jax.nn.relu(heads["room_choice"]), "room_mix_2": heads["room_mix"]}

  def render(self, x, controls, consts, geo):
    # Linear, so x3 = h0 * (rir conv x2) + h1 * x2 has spectrum X2 * (h0 * RIR + h1): one FFT
    # pair at 2T (the room's tail is as long as the window), then the window crop.
    rooms_spec_RxQ = consts["spectra_RxQ"]
    x_T, size = _to_window(x, geo), 2 * geo.n_samples
    room_Q = controls["room_weights_R"].astype(rooms_spec_RxQ.dtype) @ rooms_spec_RxQ
    h = jax.nn.softmax(controls["room_mix_2"])
    return jnp.fft.irfft(jnp.fft.rfft(x_T, n=size) * (h[0] * room_Q + h[1]),
                         n=size)[:geo.n_samples]


# The block classes `model.blocks` may name, by name.
BLOCKS: dict = {block.name: block for block in (Attack, Resonance, Harmonic, Room)}


# The schedule's own names in the decoder's controls and heads (`decoder.py`): no block's.
RESERVED = ("frame", "gain", "fine", "schedule")


def register(block_class) -> None:
  """Makes a block class available to `model.chain` under its name (never a replacement)."""
  name = block_class.name
  if not name or name in BLOCKS or name in RESERVED:
    raise ValueError(f"a block needs a name of its own; {name!r} is "
                     f"{'taken' if name else 'empty'}")
  BLOCKS[name] = block_class


def pitch_block(chain):
  """The first block of `chain` with a pitch control (one that overrides `read_pitch`), or None."""
  return next((b for b in chain if type(b).read_pitch is not Block.read_pitch), None)


def chain_of(names, sections) -> tuple:
  """The blocks `names` (checked: known, the attack first, each once), each made from its section
  of `sections` ({block name: its settings})."""
  names = tuple(names)
  unknown = [n for n in names if n not in BLOCKS]
  if unknown or not names or names[0] != "attack" or len(set(names)) != len(names):
    raise ValueError(f"model.chain={names!r}: the attack first, then any of "
                     f"{', '.join(n for n in BLOCKS if n != 'attack')}, each once")
  out = []
  for name in names:
    if name not in sections:
      raise ValueError(f"model.blocks.{name}: no settings for the block {name!r}; add its "
                       "section to the config")
    settings = dict(sections[name])
    fields = [f.name for f in dataclasses.fields(BLOCKS[name])]
    if sorted(settings) != sorted(fields):
      raise ValueError(f"model.blocks.{name} has {sorted(settings)}; the block takes {fields}")
    out.append(BLOCKS[name](**settings))
  return tuple(out)


def chain(cfg) -> tuple:
  """The blocks of a model config: `model.chain`, each made from its `model.blocks` section."""
  return chain_of(cfg.chain, cfg.blocks)


def check_chain(cfg) -> tuple:
  """`chain(cfg)`, with each block's lookups checked against its own heads, and its tables built
  as shapes alone (nothing is allocated) so that a block that cannot make them fails here."""
  from flax import nnx  # the tables' initialiser draws from nnx.Rngs
  blocks = chain(cfg)
  geo = Geometry.of(cfg)
  jax.eval_shape(lambda: [b.tables(geo, TableInit(nnx.Rngs(0))) for b in blocks])
  for block in blocks:
    for head in block.lookups:
      if head not in block.heads():
        raise ValueError(f"block {block.name!r}: its lookup names the head {head!r}, which it "
                         "does not declare")
  return blocks


def _to_window(x, geo):
  """A block's input at the window's length (the attack's output is shorter: zero-padded)."""
  return jnp.pad(x, (0, geo.n_samples - x.shape[0]))


def schedule(x_T, controls, geo):
  """The event at its time, in the paper's order: the cropped event is convolved with gain *
  one_hot(hop * frame) (an exact shift in time; what passes T is dropped), and only then shifted
  by the fine offset.  Shifting before the crop or the schedule would wrap a negative shift's onset
  to the end of the buffer (lost in the crop) and a positive shift's room tail into the onset."""
  scheduled_T = signal.delay_integer(x_T, geo.hop * controls["frame"])
  return controls["gain"] * signal.fine_shift(scheduled_T, controls["fine"])


def render_event(controls: dict, consts: dict, geo: Geometry, blocks) -> jax.Array:
  """One event's audio (T,): the chain of blocks, then the schedule.

  Args:
    controls: the event's controls: {block name: that block's controls}, and the schedule's
      frame, gain and fine.
    consts: {block name: that block's constants} ({'room': {'spectra_RxQ': the room bank's
      rfft at 2T}}).
    geo: the sizes.
    blocks: the chain (`chain`).
  """
  x = None
  for block in blocks:
    x = block.render(x, controls[block.name], consts.get(block.name, {}), geo)
  return schedule(_to_window(x, geo), controls, geo)
