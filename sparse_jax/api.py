"""The codec from Python: what the command line does, on numpy arrays.

  from sparse_jax import api
  codec = api.load_codec()                           # the shipped model (or a workdir, a .npz)
  events = api.encode(codec, audio, 44100)           # (T,) or (T, C) samples at any rate
  events = api.edit.drop(events, time_range=(1, 2))  # edits: pure EventSet -> EventSet functions
  audio, rate = api.decode(codec, events)            # 44100 Hz, C channels, the input's level
  audio, rate = api.decode(codec, events, model_format=True)   # the model's rate, mono, as rendered
  api.write("song.sjx", events); events = api.read("song.sjx")

The command line (`sparse_jax/cli/commands.py`) calls these same functions, so a script and the
`sparse-jax` command encode to the same bytes.
"""
import os

import numpy as np

from sparse_jax import audio_io
from sparse_jax.codec import (
  edit,  # noqa: F401  (re-exported: api.edit.drop, api.edit.perturb, ...)
  sjx,
)
from sparse_jax.codec.events import EventSet  # noqa: F401  (re-exported)
from sparse_jax.diagnostics import quiet_xla
from sparse_jax.errors import UserError

# The largest level gain `encode` stores (+20 dB): beyond it the model explains too little of the
# input for its loudness to be worth restoring.
MAX_LEVEL_GAIN = 10.0

# Codecs loaded in this process, keyed by the model's files: in-process callers (tests, a
# notebook, a folder of files) running several commands on one model restore and compile once.
_CODECS: dict = {}


def _model_key(model):
  """What identifies a model's files now (path, sizes, times), or None if they cannot be read."""
  path = os.path.realpath(model)
  if os.path.isfile(path):
    st = os.stat(path)
    return (path, st.st_mtime_ns, st.st_size)
  parts = [path]
  for name in ("config.json", "checkpoints"):
    try:
      st = os.stat(os.path.join(path, name))
      parts.append((name, st.st_mtime_ns, st.st_size))
    except OSError:
      return None
  try:
    ckpts = os.path.join(path, "checkpoints")
    parts.append(tuple(sorted((d, os.stat(os.path.join(ckpts, d)).st_mtime_ns)
                              for d in os.listdir(ckpts))))
  except OSError:
    return None
  return tuple(parts)


@quiet_xla
def load_codec(model=None):
  """A model as a `runtime.Codec`, cached while its files are unchanged.

  Args:
    model: None for the shipped model (`sparse_jax/pretrained/model.npz`); a training workdir
      (its latest checkpoint's generator); or an exported generator file (.npz).

  Raises:
    UserError: no such model, or files that do not restore.
  """
  from sparse_jax import pretrained
  from sparse_jax.codec import runtime
  model = pretrained.model_path() if model is None else os.fspath(model)
  key = _model_key(model)
  if key is not None and key in _CODECS:
    return _CODECS[key]
  if os.path.isfile(model):
    codec = runtime.Codec.from_generator_file(model)
  else:
    codec = runtime.Codec.from_workdir(model)
  if key is not None:
    _CODECS[key] = codec
  return codec


def events_for_kbps(codec, n_audio_samples: int, kbps: float, bits: int = 8) -> int:
  """Events per window for a file of `n_audio_samples` (at the model's rate) to stay <= `kbps`.

  At most the model's own count (a removal loop longer than it was trained for is not a better
  codec, only a slower one; `n_events` asks for more explicitly).

  Raises:
    UserError: `kbps` is not positive, or is below what one event per window costs.
  """
  shape = dict(n_audio_samples=int(n_audio_samples), sample_rate=codec.sample_rate,
               hop=codec.hop, window_samples=codec.n_samples, event_dim=codec.event_dim,
               bits=bits)
  if not (np.isfinite(kbps) and kbps > 0):
    raise UserError(f"kbps {kbps}: must be a positive bitrate in kbit/s, e.g. 3")
  k = sjx.events_per_window_for_kbps(kbps, **shape)
  if k < 1:
    low = sjx.kbps_bound(1, **shape)
    raise UserError(f"kbps {kbps:g}: below this model's lowest rate for this input (one event "
                    f"per window, up to {low:.2f} kbit/s at {bits} bits); ask for "
                    f"{np.ceil(low * 100) / 100:.2f} or more")
  return min(k, codec.default_events)


@quiet_xla
def encode(codec, audio, sample_rate: int | None = None, *, kbps: float | None = None,
           n_events: int | None = None, bits: int = 8, refine: int = 0,
           return_info: bool = False, **options):
  """Encodes a recording into events.

  Args:
    codec: from `load_codec`.
    audio: (T,) mono or (T, C) samples, any float range (the model was trained on peak-normalised
      windows; the encoder normalises each window itself).
    sample_rate: the rate of `audio` in Hz (default: the model's).  The audio is downmixed to
      mono and resampled to the model's rate; the rate and channel count (up to
      `sjx.RESTORED_MAX_CHANNELS` channels at up to `sjx.RESTORED_MAX_RATE` Hz; beyond that they
      are not stored) and the level that restores the input's RMS are stored in the events, and
      `decode` restores all three.
    kbps: a bitrate target: the events per window are chosen so the `.sjx` file of `bits` bits is
      at most this many kbit/s (instead of `n_events`).
    n_events: events per window (default: the model's).
    bits: the `.sjx` vector width the events will be written at (8 or 16).
    refine: Adam steps of encode-time refinement per window (0: none; `codec/refine.py`): the
      plain encode's events are optimised against the decoded audio, window by window, and kept
      only where they decode no worse.
    return_info: also return the `encode.EncodeInfo`.
    **options: passed to `encode.encode` (residual_threshold, window_hook, ...);
      `progress=True` draws a progress bar on stderr (off by default in a library).

  Returns:
    The EventSet (and the EncodeInfo when asked).

  Raises:
    UserError: empty or non-finite audio, a bad rate, or an option out of range.
  """
  from sparse_jax.codec import refine as refine_lib
  refine = refine_lib.check_steps(refine)  # before any work
  audio = np.asarray(audio, np.float32)
  if audio.ndim not in (1, 2) or audio.size == 0:
    raise UserError(f"audio of shape {audio.shape}: pass (samples,) or (samples, channels)")
  rate = codec.sample_rate if sample_rate is None else int(sample_rate)
  channels = 1 if audio.ndim == 1 else int(audio.shape[1])
  problem = sjx.source_problem(rate, channels)
  if problem:
    raise UserError(f"cannot encode audio of {problem}; resample it first")
  mono_T = audio_io.resample(audio_io.downmix(audio), rate, codec.sample_rate)
  if mono_T.size > sjx.MAX_AUDIO_SAMPLES:
    raise UserError(f"{mono_T.size} samples at {codec.sample_rate} Hz is more than a .sjx file "
                    f"holds ({sjx.MAX_AUDIO_SAMPLES}); split the recording")
  if kbps is not None:
    if n_events is not None:
      raise UserError("kbps and n_events both set the events per window; pass one of them")
    n_events = events_for_kbps(codec, mono_T.size, kbps, bits)
  events, info = codec.encode(mono_T, n_events=n_events, bits=bits, return_info=True, **options)
  if refine:
    events, info = refine_lib.refine(codec, mono_T, events, info, refine, bits=bits,
                                     progress=options.get("progress", False))
  if not sjx.restorable(rate, channels):  # decode would not write it back: not stored
    rate = channels = 0
  events = events.replace(source_sample_rate=rate, source_channels=channels,
                          level=level_gain(audio_io.rms(audio), info.decoded_rms))
  return (events, info) if return_info else events


def level_gain(input_rms: float, decoded_rms: float) -> float:
  """The gain that brings decoded audio of `decoded_rms` to the input's RMS (0: none to store).

  At most MAX_LEVEL_GAIN: a file the model barely explains must not be amplified into noise.
  Rounded as the `.sjx` file stores it, so a round trip decodes exactly as the file does.
  """
  if not (decoded_rms > 0 and input_rms > 0):
    return 0.0
  return sjx.file_level(min(input_rms / decoded_rms, MAX_LEVEL_GAIN))


@quiet_xla
def decode(codec, events, *, model_format: bool = False, ignore_model_id: bool = False,
           progress: bool = False):
  """Renders events to audio: (float32 samples, sample rate), by default in the input's format.

  Args:
    codec: the model that encoded the events.
    events: an EventSet.
    model_format: the model's own output (its rate, mono, the level as rendered) instead of the
      encoded recording's rate, channel count and RMS level.  Events that do not store the
      recording's format (older files, or more than `sjx.RESTORED_MAX_CHANNELS` channels /
      `sjx.RESTORED_MAX_RATE` Hz) come out at the model's rate, mono; without a stored level,
      at the level as rendered.
    ignore_model_id: decode even if another checkpoint encoded the events.
    progress: a progress bar on stderr.

  Returns:
    (audio, rate): audio is (T,) at the model's rate, or (T',) / (T', C) at the recording's rate.
    Values may exceed [-1, 1]; nothing is clipped here.
  """
  audio_T = codec.decode(events, ignore_model_id=ignore_model_id, progress=progress)
  if model_format:
    return audio_T, codec.sample_rate
  if events.level > 0:
    audio_T = audio_T * np.float32(events.level)
  if not sjx.restorable(events.source_sample_rate, events.source_channels):
    return audio_T, codec.sample_rate
  return (audio_io.to_format(audio_T, codec.sample_rate, events.source_sample_rate,
                             events.source_channels), events.source_sample_rate)


def read(path, max_seconds: float | None = None) -> EventSet:
  """The events of a `.sjx` file (UserError for anything but a valid file).

  `max_seconds`: accept a declared length up to this even where the events span less (see
  `sjx.decode_bytes`).
  """
  return sjx.read(path, max_seconds=max_seconds)


def write(path, events, bits: int = 8) -> None:
  """Writes events as a `.sjx` file, atomically."""
  sjx.write(path, events, bits=bits)
