"""A trained checkpoint as a codec: loading, compiled functions, rendering and decoding.

`Codec.from_workdir(workdir)` (the latest checkpoint of a training run) or
`Codec.from_generator_file(path)` (an exported generator, the shipped model) give a `Codec`;
`codec.encode(audio)` streams audio through it (`encode.py`), `codec.decode(events)` renders events
back to audio.

Decoding renders each event exactly as the encoder saw it: at its frame RELATIVE to its window
(window start = (frame // half) * half, half = N // 2), through the decoder, truncated at that
window's end, then overlap-added at the window's start sample.

Compilation: one jitted function per shape (the removal loop on a (1, F, N) window, per step count
and stopping mode; the renderer on batches of `RENDER_BATCH` events).  The jitted functions are
shared between `Codec` instances of the same model config, so reloading a checkpoint does not
compile again.
"""
import contextlib
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparse_jax import progress as progress_lib
from sparse_jax.codec import events as events_lib
from sparse_jax.errors import UserError
from sparse_jax.geometry import Geometry

# Events rendered per decoder call: one compiled shape; a short last batch is padded with silent
# (gain 0) events.
RENDER_BATCH = 32

# Jitted functions, keyed by (model config JSON, kind, static arguments).  Two Codecs of the same
# config have structurally identical graphs, so they can share the compiled code; parameters are
# arguments, never baked-in constants.
_JIT_CACHE: dict = {}


@contextlib.contextmanager
def _quiet_library_logs():
  """Silences Orbax's (absl) log records while restoring: a damaged checkpoint must reach the user
  as our one-line UserError, not as extra ERROR lines before it."""
  loggers = [logging.getLogger(name) for name in ("absl", "orbax")]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(logging.CRITICAL + 1)
  try:
    yield
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


def _model_cfg_key(cfg) -> str:
  return cfg.model.to_json(sort_keys=True)


def _inference_cfg(cfg):
  """The model config with remat off (no gradients here): a copy, the codec's config unchanged."""
  model_cfg = cfg.model.copy_and_resolve_references()
  model_cfg.remat = False
  return model_cfg


def _make_window_fn(graphs, cfg, n_steps: int):
  """The jitted removal loop on one window: (params, consts, spec_1xFxN, threshold, allowed_H)
  -> dict.

  One compiled function serves the fixed count (threshold < 0) and the threshold rule: the loop
  always runs every step, and the rule only picks how many of them are kept.  Likewise for the
  frames events may start at (`allowed_H`, bool over the first half): every frame, or the onset
  rule's (`codec/onsets.py`).
  """
  from sparse_jax import model as model_lib
  mcfg = _inference_cfg(cfg)
  half = Geometry.of(mcfg).half

  def fn(g_params, g_consts, spec_1xFxN, threshold, allowed_H):
    model = nnx.merge(graphs.g_graph, g_params, g_consts)
    dec = model_lib.decompose(model, spec_1xFxN, mcfg, n_events=n_steps,
                              allowed_BxH=allowed_H[None])
    initial = jnp.abs(spec_1xFxN[0, :, :half]).sum()
    safe = jnp.where(initial > 0, initial, 1.0)
    # A silent window has share 0 throughout (nothing to remove), never NaN.
    shares_S = jnp.where(initial > 0, dec.residual_l1_BxE[0] / safe, 0.0)
    shares_S1 = jnp.concatenate([jnp.where(initial > 0, 1.0, 0.0)[None], shares_S])
    # Keep events until the share first drops below the threshold: k = the first index of
    # shares_S1 below it (0: the window is already below, no events), else all steps.
    below = shares_S1 < threshold
    k = jnp.where(below.any(), jnp.argmax(below), n_steps).astype(jnp.int32)
    return dict(vectors=dec.vectors_BxExD[0], frames=dec.frames_BxE[0], gains=dec.gains_BxE[0],
                fine=dec.fine_BxE[0], shares=shares_S1, initial=initial, kept=k)

  return jax.jit(fn)


def _make_render_fn(graphs):
  """The jitted decoder on a batch: (params, consts, vectors, frames, gains, fine) -> (B, T)."""

  def fn(g_params, g_consts, vectors_BxD, frames_B, gains_B, fine_B):
    model = nnx.merge(graphs.g_graph, g_params, g_consts)
    audio_BxT, _ = model.decoder(vectors_BxD, frames_B, gains_B, fine_B)
    return audio_BxT

  return jax.jit(fn)


def _make_pitch_fn(graphs):
  """The jitted pitch reading: (params, consts, vectors) -> (MIDI (B,), sounded (B,)) or None."""

  def fn(g_params, g_consts, vectors_BxD):
    model = nnx.merge(graphs.g_graph, g_params, g_consts)
    return model.decoder.pitches(vectors_BxD)

  return jax.jit(fn)


class Codec:
  """A trained generator used as a codec: `encode(audio) -> EventSet`, `decode(EventSet) -> audio`.

  Build it with `Codec.from_workdir(workdir)` (the latest checkpoint of a training run) or
  `Codec(cfg, graphs, g_params, model_id)`.
  """

  def __init__(self, cfg, graphs, g_params, model_id: bytes, step: int | None = None):
    self.cfg = cfg
    self.step = step  # the training step of the parameters, where known
    self.graphs = graphs
    self.g_params = g_params
    self.model_id = bytes(model_id)
    m = cfg.model
    self.sample_rate = int(m.sample_rate)
    self.n_samples = int(m.n_samples)
    self.window = int(m.window)
    self.hop = int(m.hop)
    geo = Geometry.of(m)
    self.n_frames, self.half, self.n_bins = geo.n_frames, geo.half, geo.n_bins
    self.event_dim = int(m.event_dim)
    self.default_events = int(m.n_events)
    self._key = _model_cfg_key(cfg)

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None) -> "Codec":
    """Loads the generator of the latest (or the given) checkpoint of a training workdir (only its
    arrays are read: no optimiser or discriminator state).

    Raises:
      UserError: no workdir, no config, no checkpoint, or a checkpoint that cannot be restored.
    """
    from sparse_jax import checkpoint
    if not os.path.isdir(workdir):
      raise UserError(f"model {workdir!r} does not exist: pass a training workdir or an exported "
                      "generator file (.npz)")
    try:
      with _quiet_library_logs():
        cfg, graphs, g_params, model_id, step = checkpoint.restore_generator(workdir, step)
    except UserError:
      raise
    except Exception as e:
      # Orbax and the config loader raise many types for damaged files; a user sees one line.
      first = (str(e).splitlines() or [""])[0][:200]
      raise UserError(f"cannot load the model in {workdir!r} ({type(e).__name__}: {first}); "
                      "the checkpoint or config.json is damaged or from another version: "
                      "retrain it or use another model") from None
    return cls(cfg, graphs, g_params, model_id, step)

  @classmethod
  def from_generator_file(cls, path: str) -> "Codec":
    """Loads an exported generator (`python -m sparse_jax export`, the shipped model): no
    optimiser and no discriminator state are read or built.

    Raises:
      UserError: missing, damaged or foreign file.
    """
    from sparse_jax import generator
    with _quiet_library_logs():
      cfg, graphs, g_params, model_id, step = generator.load(path)
    return cls(cfg, graphs, g_params, model_id, step)

  # --------------------------------------------------------------------------------------------
  # Compiled pieces.

  def _cached(self, kind, *static):
    key = (self._key, kind) + static
    fn = _JIT_CACHE.get(key)
    if fn is None:
      if kind == "window":
        fn = _make_window_fn(self.graphs, self.cfg, *static)
      elif kind == "pitch":
        fn = _make_pitch_fn(self.graphs)
      else:
        fn = _make_render_fn(self.graphs)
      _JIT_CACHE[key] = fn
    return fn

  def run_window(self, spec_FxN: np.ndarray, n_steps: int, threshold: float | None,
                 allowed_H: np.ndarray | None = None) -> dict:
    """The removal loop on one window's spectrogram (F, N); returns numpy arrays.

    `allowed_H` (bool over the first half's frames; default all) is where events may start.
    Keys: vectors (S, D), frames (S,) relative to the window, gains (S,), fine (S,), shares (S+1,),
    initial (), kept () the number of kept steps.
    """
    fn = self._cached("window", int(n_steps))
    thr = np.float32(-1.0 if threshold is None else threshold)
    if allowed_H is None:
      allowed_H = np.ones(self.half, bool)
    out = fn(self.g_params, self.graphs.g_consts, jnp.asarray(spec_FxN)[None], thr,
             jnp.asarray(allowed_H, bool))
    return jax.tree.map(np.asarray, out)

  def render(self, vectors_ExD, frames_E, gains_E, fine_E) -> np.ndarray:
    """Renders events at frames RELATIVE to a window: float32 (E, n_samples), batched."""
    vectors_ExD = np.asarray(vectors_ExD, np.float32).reshape(-1, self.event_dim)
    n = vectors_ExD.shape[0]
    out = np.zeros((n, self.n_samples), np.float32)
    fn = self._cached("render")
    for lo in range(0, n, RENDER_BATCH):
      hi = min(lo + RENDER_BATCH, n)
      pad = RENDER_BATCH - (hi - lo)
      args = [np.asarray(x)[lo:hi] for x in (vectors_ExD, frames_E, gains_E, fine_E)]
      v = np.concatenate([args[0], np.zeros((pad, self.event_dim), np.float32)])
      f = np.concatenate([args[1].astype(np.int32), np.zeros(pad, np.int32)])
      g = np.concatenate([args[2].astype(np.float32), np.zeros(pad, np.float32)])
      s = np.concatenate([args[3].astype(np.float32), np.zeros(pad, np.float32)])
      audio = fn(self.g_params, self.graphs.g_consts, v, f, g, s)
      out[lo:hi] = np.asarray(audio)[:hi - lo]
    return out

  @property
  def has_pitch_control(self) -> bool:
    """Whether a block of the model's chain chooses each event's pitch (`blocks.Harmonic`)."""
    from sparse_jax import blocks
    return blocks.pitch_block(blocks.chain(self.cfg.model)) is not None

  def midi_pitches(self, vectors_ExD) -> np.ndarray | None:
    """The MIDI note each event's pitch control chose (float; NaN where the event does not sound
    it), or None for a model without a pitch control."""
    if not self.has_pitch_control:
      return None
    vectors_ExD = np.asarray(vectors_ExD, np.float32).reshape(-1, self.event_dim)
    out = np.full(len(vectors_ExD), np.nan)
    fn = self._cached("pitch")
    for lo in range(0, len(vectors_ExD), RENDER_BATCH):
      batch = vectors_ExD[lo:lo + RENDER_BATCH]
      padded = np.concatenate([batch, np.zeros((RENDER_BATCH - len(batch), self.event_dim),
                                               np.float32)])
      midi, sounded = (np.asarray(a)[:len(batch)]
                       for a in fn(self.g_params, self.graphs.g_consts, padded))
      out[lo:lo + len(batch)] = np.where(sounded, midi, np.nan)
    return out

  # --------------------------------------------------------------------------------------------
  # Encoding.

  def windows_for(self, n_audio_samples: int) -> tuple[int, int]:
    """(number of input frames ceil(T / hop), number of windows) for T samples of audio."""
    return events_lib.stream_windows(n_audio_samples, self.hop, self.n_samples)

  def encode(self, audio_T, **options):
    """Streams mono audio at the model's rate through the model: `encode.encode(self, ...)`
    (the options and what it returns are documented there)."""
    from sparse_jax.codec import encode  # the streaming encoder drives this runtime
    return encode.encode(self, audio_T, **options)

  # --------------------------------------------------------------------------------------------
  # Decoding.

  def check_compatible(self, events: events_lib.EventSet, ignore_model_id: bool = False):
    """UserError unless `events` were made by this model (id, rate, hop, window, dimension)."""
    if not ignore_model_id and events.model_id != self.model_id:
      raise UserError(f"the events were made by model {events.model_id.hex()[:12]}..., this "
                      f"checkpoint is {self.model_id.hex()[:12]}...: decode with the checkpoint "
                      "that encoded them")
    mine = (self.sample_rate, self.hop, self.n_samples, self.event_dim)
    theirs = (events.sample_rate, events.hop, events.window_samples, events.event_dim)
    if mine != theirs:
      raise UserError("the events do not fit this model (sample rate, hop, window, event size "
                      f"{theirs} vs {mine}): decode with the checkpoint that encoded them")

  def window_of(self, frames_E) -> np.ndarray:
    """The window index of events at absolute frames (the window whose first half holds them)."""
    return np.asarray(frames_E, np.int64) // self.half

  def decode(self, events: events_lib.EventSet, *, ignore_model_id: bool = False,
             progress: bool = False) -> np.ndarray:
    """Renders and overlap-adds the events: float32 audio of length `events.n_audio_samples`.

    Raises:
      UserError: the events come from another model (unless `ignore_model_id`) or do not fit it.
    """
    self.check_compatible(events, ignore_model_id)
    n_out = events.n_audio_samples
    # Silent events (gain 0: the file's fillers of silence) render nothing: not rendered at all.
    events = events.select(events.gains > 0)
    if len(events) == 0:
      return np.zeros(n_out, np.float32)
    window_E = self.window_of(events.frames)
    relative_E = events.frames - window_E * self.half
    starts_E = window_E * self.half * self.hop
    out_T = np.zeros(max(n_out, int(starts_E.max()) + self.n_samples), np.float32)
    # Counted in windows, as the encoder counts them (events.n_windows), though rendered in batches.
    n_windows = events.n_windows
    bar = progress_lib.Progress(n_windows, "decoding", enabled=progress and len(events) > 4 * RENDER_BATCH,
                   unit="window")
    for lo in range(0, len(events), RENDER_BATCH):
      sl = slice(lo, lo + RENDER_BATCH)
      audio_BxT = self.render(events.vectors[sl], relative_E[sl], events.gains[sl],
                              events.offsets[sl])
      for start, audio in zip(starts_E[sl], audio_BxT):
        out_T[start:start + self.n_samples] += audio
      bar.update(n_windows * min(lo + RENDER_BATCH, len(events)) // len(events))
    bar.close()
    return out_T[:n_out]
