"""Synthesis blocks: each one owns its MLP heads, its tables, its controls and its signal.

An event is rendered by a chain of blocks, each mixing its input (dry) with a filtered copy (wet),
then scheduled at its time (magenta/ddsp's processors: `get_controls`, `get_signal`).  A block
declares

    heads(cfg)                         {head name: output shape per event}
    tables(cfg, init)                  {table name: initial array} (trained; `init.uniform(s, shape)`
                                       draws U(-s, s) from the model's next key, `init.key()` a key)
    constants(cfg)                     {constant name: array} (never trained, never checkpointed:
                                       made deterministically from the config, e.g. a seeded bank)
    lookups                            {head name: table name} (ReLU-weighted mixes of rows)
    controls(heads, tables, geo)       {control name: batched array}
    render(x, controls, consts, geo)   one event's signal from the previous block's; `consts` are
                                       this block's own constants

and `model.blocks` (default `DEFAULT_BLOCKS`) lists the chain, so adding one is one class,
`register`ed, and its name in the config.  Head, table and control names are shared by the
chain's blocks: a name two blocks declare is an error (`check_names`), never an overwrite.  The
decoder, the train step, the checkpoint and the generator file know nothing block-specific.
The attack comes first (it makes the excitation); the others can be left out
(`--config.model.blocks="('attack', 'resonance')"`: no room).  Heads and tables keep the order
of the chain, which fixes the parameters' initialisation and names.

Shape letters as in `geometry.py`.
"""
import jax
import jax.numpy as jnp

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
  """What every block has unless it says otherwise: no tables, no lookups, no constants."""
  name = ""
  lookups: dict = {}

  def tables(self, cfg, init) -> dict:
    del cfg, init
    return {}

  def constants(self, cfg) -> dict:
    del cfg
    return {}


def _mix(weights_BxJ, table_RxQ):
  """The lookup: a ReLU-weighted, unnormalised mix of a table's rows (a linear layer whose input
  is rectified)."""
  return jax.nn.relu(weights_BxJ) @ table_RxQ


class Attack(Block):
  """A noise burst: a train of spikes, filtered by C noise filters under deformation masks."""
  name = "attack"
  lookups = {"envelopes": "envelopes", "noise_resonance": "noise_filters",
             "noise_deformations": "noise_deformations"}

  def heads(self, cfg):
    return {"envelopes": (cfg.n_envelopes,),
            "noise_resonance": (cfg.noise_expressivity, cfg.n_noise_filters),
            "noise_deformations": (cfg.n_noise_deformations,),
            "noise_mixes": (2,)}

  def tables(self, cfg, init):
    n_frames = Geometry.of(cfg).n_frames
    return {"envelopes": init.uniform(0.02, (cfg.n_envelopes,
                                             cfg.envelope_spikes * cfg.envelope_points)),
            "noise_filters": init.uniform(1.0, (cfg.n_noise_filters, cfg.noise_filter_samples)),
            "noise_deformations": init.uniform(0.02, (cfg.n_noise_deformations,
                                                      cfg.noise_expressivity * n_frames))}

  def controls(self, heads, tables, geo):
    b = heads["envelopes"].shape[0]
    return {
        "envelope_IxP": _mix(heads["envelopes"], tables["envelopes"]).reshape(
            b, geo.envelope_spikes, geo.envelope_points),
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
    impulse_A = jnp.pad(synth.energy_impulse(controls["envelope_IxP"], geo.attack_samples),
                        (0, filter_len - 1))
    noise_CxA = signal.fft_convolve(impulse_A, controls["noise_filters_CxL"])
    masks_CxA = synth.deformation_masks(controls["noise_deform_CxN"],
                                        geo.n_samples)[:, :impulse_A.shape[0]]
    return synth.dry_wet(impulse_A, jnp.sum(noise_CxA * masks_CxA, axis=0),
                         controls["noise_mix_2"])


class Resonance(Block):
  """The instrument: the input convolved with C resonances, each under a deformation mask."""
  name = "resonance"
  lookups = {"resonances": "resonances", "deformations": "deformations"}

  def heads(self, cfg):
    return {"resonances": (cfg.instr_expressivity, cfg.n_resonances),
            "deformations": (cfg.n_deformations,),
            "mixes": (2,)}

  def tables(self, cfg, init):
    geo = Geometry.of(cfg)
    n_frames, n_bins = geo.n_frames, geo.n_bins
    # The resonance table is sparse at init: U(-6, 6) on about 1% of its entries.
    k_values, k_mask = jax.random.split(init.key())
    res = init.uniform(6.0, (cfg.n_resonances, 3 * n_bins), key=k_values)
    return {"resonances": res * jax.random.bernoulli(k_mask, 0.01, res.shape),
            "deformations": init.uniform(0.02, (cfg.n_deformations,
                                                cfg.instr_expressivity * n_frames))}

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


class Room(Block):
  """A mix of the fixed bank of room impulse responses (`rooms.py`; constants, not tables)."""
  name = "room"
  lookups = {"room_choice": "rooms"}

  def heads(self, cfg):
    return {"room_choice": (cfg.n_rooms,), "room_mix": (2,)}

  def constants(self, cfg):
    # The bank's rfft at 2T: the room is applied in the frequency domain (render).
    return {"spectra_RxQ": rooms.room_bank_spectra(cfg.n_rooms, cfg.n_samples, cfg.sample_rate,
                                                   cfg.room_seed)}

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


BLOCKS = {block.name: block for block in (Attack(), Resonance(), Room())}


def register(block) -> None:
  """Makes `block` available to `model.blocks` under its name (a new name: never a replacement)."""
  if not block.name or block.name in BLOCKS:
    raise ValueError(f"a block needs a name of its own; {block.name!r} is "
                     f"{'taken' if block.name else 'empty'}")
  BLOCKS[block.name] = block


def check_names(kind: str, names_by_block) -> None:
  """ValueError unless every name of `kind` (head, table, control, constant) that the chain's
  blocks declare belongs to one block only.  `names_by_block`: (block name, names) pairs."""
  owners: dict = {}
  for block_name, names in names_by_block:
    for name in names:
      other = owners.setdefault(name, block_name)
      if other != block_name:
        raise ValueError(f"blocks {other!r} and {block_name!r} both declare the {kind} "
                         f"{name!r}: rename one of them")


def check_chain(cfg) -> tuple:
  """The chain of `cfg.blocks` (`chain`), with its head and table names checked for collisions
  (tables by their shapes alone: nothing is allocated)."""
  from flax import nnx  # the tables' initialiser draws from nnx.Rngs
  blocks = chain(cfg.blocks)
  check_names("head", [(b.name, b.heads(cfg)) for b in blocks])
  tables = jax.eval_shape(lambda: [b.tables(cfg, TableInit(nnx.Rngs(0))) for b in blocks])
  check_names("table", [(b.name, t) for b, t in zip(blocks, tables)])
  return blocks


def chain(names) -> tuple:
  """The blocks of `model.blocks`, checked: known names, the attack first, no repeats."""
  names = tuple(names)
  unknown = [n for n in names if n not in BLOCKS]
  if unknown or not names or names[0] != "attack" or len(set(names)) != len(names):
    raise ValueError(f"model.blocks={names!r}: the attack first, then any of "
                     f"{', '.join(n for n in BLOCKS if n != 'attack')}, each once")
  return tuple(BLOCKS[n] for n in names)


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


def render_event(controls: dict, consts: dict, geo: Geometry, blocks=None) -> jax.Array:
  """One event's audio (T,): the chain of blocks, then the schedule.

  Args:
    controls: the event's controls (every block's, plus frame, gain and fine).
    consts: {block name: that block's constants} ({'room': {'spectra_RxQ': the room bank's
      rfft at 2T}}).
    geo: the sizes.
    blocks: the chain (default: `DEFAULT_BLOCKS`).
  """
  x = None
  for block in blocks or chain(DEFAULT_BLOCKS):
    x = block.render(x, controls, consts.get(block.name, {}), geo)
  return schedule(_to_window(x, geo), controls, geo)
