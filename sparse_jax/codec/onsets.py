"""The encoder's onset rule: events start only where a note can start (`encode --at-onsets`).

The model, trained only to remove energy, starts events wherever energy is left, so a held note
is spelled as a string of re-attacks (docs/notes.md: onset precision 0.35 on the embedded test
split).  This rule asks a plain onset detector (librosa's spectral-flux `onset_detect`, the
anchor of `benchmarks/notes.py`) where the recording's notes start, and lets the removal loop
choose only frames within `RADIUS_SECONDS` of one.  A window whose first half holds no onset
keeps no event: what sounds there is left to the tails of earlier events.  On a model trained
without it, the rule trades removal for events that sit on notes (docs/notes.md measures both);
training with it (`loss.events_at_onsets`) uses `allowed_in_graph`, the same recipe in JAX,
since librosa cannot run inside the jitted step.
"""
import numpy as np

from sparse_jax.errors import UserError

# How far from a detected onset an event may start: half of the notes benchmark's +-50 ms
# tolerance, so an event the rule allows is always counted at that onset.
RADIUS_SECONDS = 0.025


def onset_frames(audio_T: np.ndarray, sample_rate: int, hop: int) -> np.ndarray:
  """The codec frames (int64, ascending) at which librosa detects an onset in `audio_T`.

  Frame t of the codec starts at sample hop * t, as librosa's (centred) frame t is at that time.
  """
  try:
    import librosa
  except ImportError:
    raise UserError("--at-onsets needs librosa: pip install 'sparse-jax[notes]'") from None
  audio_T = np.asarray(audio_T, np.float32)
  if not np.any(audio_T):
    return np.zeros(0, np.int64)
  frames = librosa.onset.onset_detect(y=audio_T, sr=sample_rate, hop_length=hop, units="frames")
  return np.asarray(frames, np.int64)


def allowed_frames(onsets_O: np.ndarray, start: int, n_frames: int, radius: int) -> np.ndarray:
  """(n_frames,) bool: the frames [start, start + n_frames) within `radius` of an onset."""
  frames_H = start + np.arange(n_frames)
  if onsets_O.size == 0:
    return np.zeros(n_frames, bool)
  # The nearest onset of each frame, by binary search in the sorted onsets.
  right = np.clip(np.searchsorted(onsets_O, frames_H), 0, onsets_O.size - 1)
  left = np.clip(right - 1, 0, onsets_O.size - 1)
  nearest = np.minimum(np.abs(onsets_O[right] - frames_H), np.abs(onsets_O[left] - frames_H))
  return nearest <= radius


def radius_frames(sample_rate: int, hop: int) -> int:
  """RADIUS_SECONDS in frames (at least 0: the onset frame itself)."""
  return int(RADIUS_SECONDS * sample_rate // hop)


def training_rule(cfg, audio_BxT):
  """The frames a model trained with the rule (`loss.events_at_onsets`) may start events at in
  its windows (B, half), from `allowed_in_graph`; None for any other model.  Training and the
  held-out evaluation (eval.py) both ask here, so a model is scored as it was trained."""
  if not cfg.loss.events_at_onsets:
    return None
  from sparse_jax import signal
  from sparse_jax.geometry import Geometry
  m = cfg.model
  return allowed_in_graph(signal.stft_magnitude(audio_BxT, m.window, m.hop), Geometry.of(m).half,
                          m.window, m.hop, m.sample_rate)


# The in-graph detector's peak picking, librosa's `onset_detect` defaults in seconds.
_PRE_MAX_S, _PRE_AVG_S, _POST_AVG_S, _DELTA = 0.03, 0.10, 0.10, 0.07


def allowed_in_graph(spec_BxFxN, half: int, window: int, hop: int, sample_rate: int):
  """(B, half) bool: the first-half frames within `RADIUS_SECONDS` of an onset, in JAX.

  Training with the onset rule (`loss.events_at_onsets`) needs the rule inside the jitted step,
  where librosa cannot run.  This is librosa's recipe on the codec's own |STFT|: spectral flux of
  the dB spectrogram (80 dB range below the window's peak; the rectified frame-to-frame rise,
  averaged over bins), normalised to [0, 1], moved so that it peaks at the frame whose window
  starts at the onset (the codec's frames are not centred, as librosa's are), and its peaks
  picked as `onset_detect` picks them (a maximum over the last 30 ms, 0.07 above the mean of
  +-100 ms).  It works on linear bins, not librosa's mel bands: the same onsets on struck
  notes, within two frames of the true onset (tested), not the same function.
  """
  import jax
  import jax.numpy as jnp
  power = jnp.square(spec_BxFxN)
  db = 10.0 * jnp.log10(jnp.maximum(power, 1e-10))
  db = jnp.maximum(db, db.max(axis=(1, 2), keepdims=True) - 80.0)
  rise_BxN = jnp.mean(jax.nn.relu(jnp.diff(db, axis=2)), axis=1)
  # The rise in dB peaks about when an onset is three quarters into a frame's window: moved by
  # window / (2 hop) + 2 frames, the peak falls on the frame that starts at the onset (measured
  # at 512/128 and 1024/256; tested).
  lag = window // (2 * hop) + 2
  n = spec_BxFxN.shape[2]
  env_BxN = jnp.pad(rise_BxN, ((0, 0), (lag, 0)))[:, :n]
  env_BxN = env_BxN - env_BxN.min(axis=1, keepdims=True)
  env_BxN = env_BxN / jnp.maximum(env_BxN.max(axis=1, keepdims=True), 1e-12)
  frames = lambda s: max(1, int(s * sample_rate // hop))
  pre_max, pre_avg, post_avg = frames(_PRE_MAX_S), frames(_PRE_AVG_S), frames(_POST_AVG_S)
  # Padded with jnp.pad (not a concatenation with new arrays): it keeps the batch's sharding.
  padded = jnp.pad(env_BxN, ((0, 0), (pre_avg, pre_avg)), constant_values=-jnp.inf)
  shifted = lambda k: padded[:, pre_avg + k:pre_avg + k + n]  # env at t + k (-inf outside)
  local_max = jnp.max(jnp.stack([shifted(k) for k in range(-pre_max, 1)]), axis=0)
  window_KxBxN = jnp.stack([shifted(k) for k in range(-pre_avg, post_avg + 1)])
  inside = jnp.isfinite(window_KxBxN)
  mean = (jnp.where(inside, window_KxBxN, 0.0).sum(0)
          / jnp.maximum(inside.sum(0), 1))
  peaks_BxN = (env_BxN >= local_max) & (env_BxN >= mean + _DELTA) & (env_BxN > 0)
  radius = radius_frames(sample_rate, hop)
  near = jnp.zeros_like(peaks_BxN)
  spread = jnp.pad(peaks_BxN, ((0, 0), (radius, radius)))
  for k in range(2 * radius + 1):
    near = near | spread[:, k:k + n]
  return near[:, :half]
