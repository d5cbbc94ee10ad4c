"""`EventSet`: the encoded form of one audio file, as plain numpy arrays plus metadata.

An encoded file is a set of E events.  Event e starts at sample `hop * frames[e] + offsets[e]` of
the original audio, is rendered by the decoder from `vectors[e]` (D raw network outputs) and is
scaled by `gains[e]`.  The metadata says how to turn frames into time (`sample_rate`, `hop`), how
long the original audio was (`n_audio_samples`), and which model made the events (`model_id`, 16
bytes), so a file is never decoded with a checkpoint that did not encode it.

Validation happens once, in `__post_init__`, and raises ValueError; code that builds an EventSet
from user input (the `.sjx` reader, the JSON importer) turns that into a UserError.
"""
import dataclasses

import numpy as np

# The value ranges of the `.sjx` header fields (sjx.py).  They are checked here, at construction, so
# that an EventSet that exists can always be written.
MAX_U16 = 2**16 - 1
MAX_U32 = 2**32 - 1
MAX_U64 = 2**64 - 1
# events_per_window is a u16 whose top bit is the file's `refined` flag (sjx.py), so the count
# itself stays below 2^15.
MAX_EVENTS_PER_WINDOW = 2**15 - 1
MODEL_ID_BYTES = 16


def stream_windows(n_audio_samples: int, hop: int, window_samples: int) -> tuple[int, int]:
  """(input frames, streaming windows) for `n_audio_samples` of audio: the one definition.

  The streaming encoder slides a window of `window_samples` by half of it (half = window_samples
  // hop // 2 frames) until every input frame (ceil(T / hop) of them) lies in some window's first
  half; the decoder's progress, `info` and the report count windows with this same function.
  """
  half = max(int(window_samples) // int(hop) // 2, 1)
  n_in = max(1, -(-int(n_audio_samples) // int(hop)))
  return n_in, max(1, -(-n_in // half))


@dataclasses.dataclass(frozen=True, eq=False)
class EventSet:
  """E events of one encoded audio file.

  Attributes:
    frames: int64 (E,), absolute STFT frame index of each event's start, in [0, n_audio_samples //
      hop].
    offsets: float32 (E,), sub-frame fine shift in samples, in [-hop, hop].
    gains: float32 (E,), finite and >= 0.
    vectors: float32 (E, D), raw event vectors (finite, unbounded).
    sample_rate: audio sample rate in Hz.
    hop: STFT hop in samples (one frame = hop samples).
    window_samples: the model's analysis window in samples (2**17 for the paper model).
    n_audio_samples: length of the original audio in samples.
    model_id: 16 bytes identifying the checkpoint that produced the events.
    events_per_window: how many events the encoder takes per streaming window.
    refined: the events were refined at encode time (`encode --refine N`, refine.py).  They are
      ordinary events; the flag only says how they were made.
    source_sample_rate: the sample rate of the recording that was encoded, in Hz (0: unknown).
      `decode --original-format` resamples to it.
    source_channels: that recording's channel count (0: unknown).  The codec is mono, so
      `decode` writes the same signal to each channel.
    level: the gain that brings the rendered audio to the recording's RMS level (0: not stored;
      decode then leaves the level as rendered).  `decode` applies it unless asked for the
      model's own output.
  """
  frames: np.ndarray
  offsets: np.ndarray
  gains: np.ndarray
  vectors: np.ndarray
  sample_rate: int
  hop: int = 256
  window_samples: int = 2**17
  n_audio_samples: int = 0
  model_id: bytes = bytes(MODEL_ID_BYTES)
  events_per_window: int = 32
  refined: bool = False
  source_sample_rate: int = 0
  source_channels: int = 0
  level: float = 0.0

  def __post_init__(self):
    # Normalise dtypes first (frozen dataclass, hence object.__setattr__), then check values.
    set_ = lambda name, value: object.__setattr__(self, name, value)
    frames = np.asarray(self.frames)
    if frames.size and not (np.issubdtype(frames.dtype, np.integer) or
                            (np.issubdtype(frames.dtype, np.floating) and
                             np.all(np.isfinite(frames)) and np.all(frames == np.round(frames)))):
      raise ValueError(f"frames must be whole numbers, got dtype {frames.dtype}")
    set_("frames", np.ascontiguousarray(frames, dtype=np.int64))
    set_("offsets", np.ascontiguousarray(self.offsets, dtype=np.float32))
    set_("gains", np.ascontiguousarray(self.gains, dtype=np.float32))
    vectors = np.asarray(self.vectors, dtype=np.float32)
    if vectors.ndim != 2:
      raise ValueError(f"vectors must have shape (E, D), got {vectors.shape}")
    set_("vectors", np.ascontiguousarray(vectors))
    for name in ("sample_rate", "hop", "window_samples", "n_audio_samples", "events_per_window",
                 "source_sample_rate", "source_channels"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
      set_(name, int(value))
    model_id = self.model_id
    if not isinstance(model_id, (bytes, bytearray)) or len(model_id) != MODEL_ID_BYTES:
      raise ValueError(f"model_id must be {MODEL_ID_BYTES} bytes, got {model_id!r}")
    set_("model_id", bytes(model_id))
    set_("refined", bool(self.refined))
    level = self.level
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
      raise ValueError(f"level must be a number, got {level!r}")
    set_("level", float(level))
    self._validate()

  def _validate(self):
    n = self.vectors.shape[0]
    for name in ("frames", "offsets", "gains"):
      shape = getattr(self, name).shape
      if shape != (n,):
        raise ValueError(f"{name} has shape {shape} but vectors has {n} rows; expected ({n},)")
    if n > MAX_U32:
      raise ValueError(f"{n} events is more than the format holds ({MAX_U32})")
    if not (np.isfinite(self.level) and self.level >= 0):
      raise ValueError(f"level must be a finite gain >= 0, got {self.level}")
    if not 1 <= self.event_dim <= MAX_U16:
      raise ValueError(f"event_dim must be in [1, {MAX_U16}], got {self.event_dim}")
    ranges = dict(sample_rate=(1, MAX_U32), hop=(1, MAX_U16), window_samples=(1, MAX_U32),
                  n_audio_samples=(0, MAX_U64),
                  events_per_window=(1, MAX_EVENTS_PER_WINDOW),
                  source_sample_rate=(0, MAX_U32), source_channels=(0, MAX_U16))
    for name, (lo, hi) in ranges.items():
      value = getattr(self, name)
      if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    if n == 0:
      return
    if not np.all(np.isfinite(self.vectors)):
      raise ValueError("vectors contain NaN or infinite values")
    if not np.all(np.isfinite(self.gains)) or np.any(self.gains < 0):
      bad = int(np.flatnonzero(~(np.isfinite(self.gains) & (self.gains >= 0)))[0])
      raise ValueError(f"gains must be finite and >= 0; event {bad} has {self.gains[bad]}")
    bad_offsets = ~(np.isfinite(self.offsets) & (np.abs(self.offsets) <= self.hop))
    if np.any(bad_offsets):
      bad = int(np.flatnonzero(bad_offsets)[0])
      raise ValueError(f"offsets must lie in [-hop, hop] = [-{self.hop}, {self.hop}]; "
                       f"event {bad} has {self.offsets[bad]}")
    # An event may start at most at the last frame of the audio (the centred STFT has
    # n_audio_samples // hop + 1 frames); anything later cannot be heard in the decoded file.
    bad_frames = (self.frames < 0) | (self.frames > self.max_frame)
    if np.any(bad_frames):
      bad = int(np.flatnonzero(bad_frames)[0])
      raise ValueError(f"frames must lie in [0, n_audio_samples // hop] = [0, {self.max_frame}]; "
                       f"event {bad} has frame {self.frames[bad]}")

  def __len__(self):
    return int(self.vectors.shape[0])

  @property
  def event_dim(self):
    """D, the length of each event vector."""
    return int(self.vectors.shape[1])

  @property
  def max_frame(self):
    """The largest allowed frame index, n_audio_samples // hop."""
    return self.n_audio_samples // self.hop

  @property
  def n_windows(self):
    """How many streaming windows cover the audio (`stream_windows`)."""
    return stream_windows(self.n_audio_samples, self.hop, self.window_samples)[1]

  @property
  def window_E(self):
    """int64 (E,): each event's streaming window (the window whose first half holds its frame)."""
    half = max(self.window_samples // self.hop // 2, 1)
    return self.frames // half

  @property
  def window_counts(self):
    """int64 (W,): events per streaming window, W = n_windows (an edit may move an event to the
    frame just past the encoder's windows; it is counted there)."""
    return np.bincount(self.window_E, minlength=self.n_windows)

  @property
  def start_samples(self):
    """float64 (E,): each event's start in samples, hop * frame + offset."""
    return self.frames.astype(np.float64) * self.hop + self.offsets.astype(np.float64)

  @property
  def times_seconds(self):
    """float64 (E,): when each event is heard from, in seconds: (hop * frame + offset) / rate.

    An event at frame 0 with a negative fine offset starts up to one hop before the audio; the
    decoded file begins at 0, so that is when it is heard from: times are never before 0.
    """
    return np.maximum(self.start_samples, 0.0) / self.sample_rate

  @property
  def duration_seconds(self):
    """Length of the original audio in seconds."""
    return self.n_audio_samples / self.sample_rate

  def replace(self, **changes):
    """A copy with some fields changed (validated again)."""
    return dataclasses.replace(self, **changes)

  def sorted(self):
    """The events ordered by frame, then offset; ties keep their order (stable)."""
    # np.lexsort is stable and sorts by the last key first.
    order = np.lexsort((self.offsets, self.frames))
    return self.select(order)

  def select(self, mask_or_indices):
    """A new EventSet holding a subset (or a reordering) of the events.

    Args:
      mask_or_indices: a boolean mask of shape (E,), or integer indices into the events (negative
        indices count from the end, as in numpy).

    Returns:
      The selected events, with the same metadata.
    """
    selector = np.asarray(mask_or_indices)
    if selector.dtype == np.bool_:
      if selector.shape != (len(self),):
        raise ValueError(f"mask has shape {selector.shape}, expected ({len(self)},)")
    elif selector.size == 0:
      selector = selector.astype(np.int64).reshape(0)
    elif not np.issubdtype(selector.dtype, np.integer) or selector.ndim != 1:
      raise ValueError(f"select takes a boolean mask or a 1-D array of integer indices, "
                       f"got dtype {selector.dtype} and shape {selector.shape}")
    elif np.any((selector < -len(self)) | (selector >= len(self))):
      raise ValueError(f"indices out of range for {len(self)} events")
    return self.replace(frames=self.frames[selector], offsets=self.offsets[selector],
                        gains=self.gains[selector], vectors=self.vectors[selector])

  def same_as(self, other):
    """True when both sets hold exactly the same arrays (bitwise) and metadata."""
    if not isinstance(other, EventSet):
      return False
    meta = ("sample_rate", "hop", "window_samples", "n_audio_samples", "model_id",
            "events_per_window", "refined", "source_sample_rate", "source_channels", "level")
    return (all(getattr(self, k) == getattr(other, k) for k in meta) and
            all(np.array_equal(getattr(self, k), getattr(other, k))
                for k in ("frames", "offsets", "gains", "vectors")))
