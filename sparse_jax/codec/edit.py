"""Edits on encoded events: pure functions EventSet -> EventSet, plus a hand-editable JSON table.

The edits reproduce the paper's experiments (random vectors at the original times, original vectors
at random times, one shared perturbation of every vector) and give a composer simple tools (drop,
move, scale).  Randomness always comes from an explicit `numpy.random.Generator`, so an edit is
reproducible from its seed.

Every function returns a new EventSet and leaves its input untouched.  `indices` arguments refer to
positions in the given EventSet (0-based, as in `to_json`'s "index" column).
"""
import json
import math

import numpy as np

from sparse_jax.codec import events as events_lib
from sparse_jax.errors import UserError

JSON_FORMAT = "sjx-events"
JSON_VERSION = 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _as_float32(values, what):
  """float64 values cast to float32, or ValueError (not numpy's overflow warning) past its range."""
  peak = float(np.abs(values).max()) if values.size else 0.0
  if not peak <= FLOAT32_MAX:  # also catches NaN / inf
    raise ValueError(f"{what} past the float32 range (largest {peak:.3g} > {FLOAT32_MAX:.3g})")
  return values.astype(np.float32)


def _index_mask(events, indices):
  """Boolean (E,) mask: all events when `indices` is None, else those listed."""
  if indices is None:
    return np.ones(len(events), bool)
  indices = np.asarray(indices)
  if indices.dtype == np.bool_:
    if indices.shape != (len(events),):
      raise ValueError(f"mask has shape {indices.shape}, expected ({len(events)},)")
    return indices.copy()
  indices = indices.reshape(-1)
  if indices.size and not np.issubdtype(indices.dtype, np.integer):
    raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
  if np.any((indices < -len(events)) | (indices >= len(events))):
    raise ValueError(f"indices out of range for {len(events)} events")
  mask = np.zeros(len(events), bool)
  mask[indices.astype(np.int64)] = True
  return mask


def random_vectors(events, rng):
  """Random vectors at the original times and gains (the paper's experiment).

  Every coordinate of every new vector is drawn from U(min, max), where min and max are the
  smallest and largest values over all of this file's vectors (one range for the whole file).

  Args:
    events: the encoded file.
    rng: numpy Generator.

  Returns:
    The events with vectors_ExD replaced.
  """
  if len(events) == 0:
    return events.replace()
  lo, hi = float(events.vectors.min()), float(events.vectors.max())
  vectors_ExD = rng.uniform(lo, hi, size=events.vectors.shape).astype(np.float32)
  # float32 rounding of a draw close to `hi` must not leave the range.
  vectors_ExD = np.clip(vectors_ExD, np.float32(lo), np.float32(hi))
  return events.replace(vectors=vectors_ExD)


def random_times(events, rng):
  """The original vectors and gains at random times.

  Each new frame is uniform over the file's frames [0, n_audio_samples // hop) and the fine
  offsets become zero.  (The paper's version also lost the gains; here they are kept so that only
  the timing changes.)

  Args:
    events: the encoded file.
    rng: numpy Generator.

  Returns:
    The events with new frames and zero offsets, in the input's order (not re-sorted).
  """
  n_frames = max(events.n_audio_samples // events.hop, 1)
  frames_E = rng.integers(0, n_frames, size=len(events), dtype=np.int64)
  return events.replace(frames=frames_E, offsets=np.zeros(len(events), np.float32))


def perturb(events, scale, rng):
  """Moves every vector by the same random vector of L2 length `scale`.

  Args:
    events: the encoded file.
    scale: the length of the shared displacement, >= 0.
    rng: numpy Generator; the direction is uniform on the unit sphere.

  Returns:
    The events with vectors_ExD + scale * direction_D.
  """
  if not (math.isfinite(scale) and scale >= 0):
    raise ValueError(f"scale must be finite and >= 0, got {scale}")
  direction_D = rng.standard_normal(events.event_dim)
  direction_D /= np.linalg.norm(direction_D)
  vectors_ExD = _as_float32(events.vectors.astype(np.float64) + scale * direction_D,
                            f"scale {scale:g} moves the vectors")
  return events.replace(vectors=vectors_ExD)


def drop(events, indices=None, time_range=None):
  """Removes events by position, by start time, or both (their union).

  Args:
    events: the encoded file.
    indices: positions (or a boolean mask) of events to remove.
    time_range: (t0, t1) in seconds; events whose start time lies in [t0, t1) are removed.

  Returns:
    The remaining events, in their original order.
  """
  if indices is None and time_range is None:
    raise ValueError("drop needs indices, time_range, or both")
  remove = np.zeros(len(events), bool)
  if indices is not None:
    remove |= _index_mask(events, indices)
  if time_range is not None:
    t0, t1 = time_range
    times = events.times_seconds
    remove |= (times >= t0) & (times < t1)
  return events.select(~remove)


def keep(events, indices):
  """Only the events at `indices` (positions or a boolean mask), in their original order: to hear
  one event (`decode --solo`) or a chosen few (`edit --keep`)."""
  return events.select(_index_mask(events, indices))


def shift_times(events, seconds, indices=None):
  """Moves events in time by `seconds` (whole frames plus a sub-frame offset).

  The shift is split into round(shift / hop) whole frames and a remainder of at most hop / 2
  samples, which is added to the offset; an offset that leaves [-hop, hop] carries one frame.  A
  shift by whole frames therefore leaves the offsets bit-exact.

  Events moved outside the file, to a frame below 0 or above n_audio_samples // hop, are DROPPED
  (not clamped: clamping would pile them up audibly at the file's edge); a shift longer than the
  file drops every moved event (however large: no frame arithmetic overflows).

  Args:
    events: the encoded file.
    seconds: the shift, positive = later.
    indices: positions (or a boolean mask) of the events to move; None moves all.

  Returns:
    The events, in their original order, minus those moved outside the file.
  """
  if not math.isfinite(seconds):
    raise ValueError(f"seconds must be finite, got {seconds}")
  mask = _index_mask(events, indices)
  shift = seconds * events.sample_rate
  if not abs(shift) <= events.n_audio_samples + 2 * events.hop:
    # Every moved event leaves the file; round(shift / hop) could overflow int64 (or be inf).
    return events.select(~mask)
  whole = round(shift / events.hop)
  rest = shift - whole * events.hop
  frames_E = events.frames.copy()
  offsets_E = events.offsets.astype(np.float64)
  frames_E[mask] += whole
  if rest != 0.0:
    offsets_E[mask] += rest
  hop = events.hop
  up, down = offsets_E > hop, offsets_E < -hop
  frames_E[up] += 1
  offsets_E[up] -= hop
  frames_E[down] -= 1
  offsets_E[down] += hop
  keep = (frames_E >= 0) & (frames_E <= events.max_frame)
  offsets_E = np.clip(offsets_E, -hop, hop).astype(np.float32)
  # Build the kept subset directly: the out-of-range frames would fail validation.
  return events.replace(frames=frames_E[keep], offsets=offsets_E[keep],
                        gains=events.gains[keep], vectors=events.vectors[keep])


def scale_gains(events, factor, indices=None):
  """Multiplies the gains of some (default: all) events by `factor` >= 0."""
  if not (math.isfinite(factor) and factor >= 0):
    raise ValueError(f"factor must be finite and >= 0, got {factor}")
  mask = _index_mask(events, indices)
  gains_E = events.gains.astype(np.float64)
  gains_E[mask] *= factor
  return events.replace(gains=_as_float32(gains_E, f"factor {factor:g} moves the gains"))


# ----------------------------------------------------------------------------------------------
# JSON.

_META_FIELDS = ("sample_rate", "hop", "window_samples", "n_audio_samples", "events_per_window")
# The recording's format (decode --original-format); optional, so older tables still load.
_SOURCE_FIELDS = ("source_sample_rate", "source_channels")


def _f32_text(x):
  """Shortest decimal text that reads back as the same float32 (always valid JSON)."""
  x = np.float32(x)
  if x != 0 and not 1e-4 <= abs(x) < 1e7:
    return np.format_float_scientific(x, unique=True, trim="-")
  return np.format_float_positional(x, unique=True, trim="0")


def to_json(events):
  """A readable table of the events that a person can edit and load back with `from_json`.

  The document holds a "metadata" object (model_id in hex) and an "events" list with one row per
  line: {"index", "time_s", "frame", "offset", "gain", "vector"}.  "index" is informational.  To
  move an event, edit either "time_s" (seconds) or "frame"/"offset" (samples), or delete the other;
  if both are present they must agree to within half a sample.

  Args:
    events: the encoded file.

  Returns:
    The JSON text.
  """
  meta = {name: getattr(events, name) for name in _META_FIELDS + _SOURCE_FIELDS}
  meta["event_dim"] = events.event_dim
  meta["model_id"] = events.model_id.hex()
  times = events.times_seconds
  rows = []
  for i in range(len(events)):
    vector = ", ".join(_f32_text(v) for v in events.vectors[i])
    rows.append(f'    {{"index": {i}, "time_s": {times[i]:.6f}, "frame": {int(events.frames[i])}, '
                f'"offset": {_f32_text(events.offsets[i])}, '
                f'"gain": {_f32_text(events.gains[i])}, "vector": [{vector}]}}')
  meta_text = json.dumps(meta, indent=2).replace("\n", "\n  ")
  body = ",\n".join(rows)
  return (f'{{\n  "format": "{JSON_FORMAT}",\n  "version": {JSON_VERSION},\n'
          f'  "metadata": {meta_text},\n  "events": [\n{body}{chr(10) if rows else ""}  ]\n}}\n')


def _number(value, where, field, integer=False):
  """A JSON number checked for type and finiteness, or UserError naming the place."""
  ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  if ok and integer:
    ok = isinstance(value, int) or (float(value).is_integer())
  if not ok or not math.isfinite(value):
    kind = "an integer" if integer else "a finite number"
    raise UserError(f"{where}: {field} must be {kind}, got {json.dumps(value)}; fix that value")
  return int(value) if integer else float(value)


def from_json(text, source="<json>"):
  """Loads the table written by `to_json` (possibly edited by hand).

  Args:
    text: the JSON text.
    source: what to call it in error messages (the file name).

  Returns:
    The EventSet, rows in the order given.

  Raises:
    UserError: invalid JSON, a missing or wrong field (naming the row, e.g. "events[3]"), or values
      an EventSet cannot hold.
  """
  try:
    doc = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"{source}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}; "
                    f"fix the syntax there") from None
  if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
    raise UserError(f'{source}: not an event table (expected "format": "{JSON_FORMAT}"); '
                    f"export one with to_json")
  if doc.get("version") != JSON_VERSION:
    raise UserError(f"{source}: unsupported event table version {doc.get('version')!r} "
                    f"(this reader knows {JSON_VERSION})")
  meta = doc.get("metadata")
  if not isinstance(meta, dict):
    raise UserError(f'{source}: missing "metadata" object; restore it from the exported file')
  where = f"{source}: metadata"
  values = {}
  for name in _META_FIELDS + ("event_dim",):
    if name not in meta:
      raise UserError(f'{where}: missing "{name}"; restore it from the exported file')
    values[name] = _number(meta[name], where, name, integer=True)
  for name in _SOURCE_FIELDS:
    values[name] = _number(meta.get(name, 0), where, name, integer=True)
  try:
    model_id = bytes.fromhex(meta.get("model_id", ""))
  except (TypeError, ValueError):
    model_id = b""
  if len(model_id) != events_lib.MODEL_ID_BYTES:
    raise UserError(f"{where}: model_id must be {2 * events_lib.MODEL_ID_BYTES} hex characters, "
                    f"got {json.dumps(meta.get('model_id'))}; restore it from the exported file")
  dim, hop, rate = values.pop("event_dim"), values["hop"], values["sample_rate"]
  if dim < 1 or hop < 1 or rate < 1:
    raise UserError(f"{where}: event_dim, hop and sample_rate must be positive")

  rows = doc.get("events")
  if not isinstance(rows, list):
    raise UserError(f'{source}: missing "events" list; restore it from the exported file')
  frames, offsets, gains, vectors = [], [], [], []
  for i, row in enumerate(rows):
    where = f"{source}: events[{i}] (row {i})"
    if not isinstance(row, dict):
      raise UserError(f"{where}: must be an object with gain, vector and frame or time_s")
    for name in ("gain", "vector"):
      if name not in row:
        raise UserError(f'{where}: missing "{name}"; add it')
    gain = _number(row["gain"], where, "gain")
    if gain < 0:
      raise UserError(f"{where}: gain must be >= 0, got {gain}; fix that value")
    vector = row["vector"]
    if not isinstance(vector, list) or len(vector) != dim:
      raise UserError(f"{where}: vector must be a list of {dim} numbers (event_dim), got "
                      f"{len(vector) if isinstance(vector, list) else type(vector).__name__}")
    vector = [_number(v, where, f"vector[{j}]") for j, v in enumerate(vector)]
    max_frame = values["n_audio_samples"] // hop
    if "frame" in row:
      frame = _number(row["frame"], where, "frame", integer=True)
      offset = _number(row.get("offset", 0.0), where, "offset")
    elif "time_s" in row:
      start = _number(row["time_s"], where, "time_s") * rate
      frame = int(round(start / hop))
      offset = start - frame * hop
    else:
      raise UserError(f'{where}: needs "frame" (and "offset") or "time_s"')
    if not 0 <= frame <= max_frame:
      raise UserError(f"{where}: starts at frame {frame}, outside the audio (frames 0 to "
                      f"{max_frame}); move or delete it")
    if abs(offset) > hop:
      raise UserError(f"{where}: offset {offset} is outside [-hop, hop] = [-{hop}, {hop}]; "
                      f"move whole frames into frame")
    if "frame" in row and "time_s" in row:
      time_s = _number(row["time_s"], where, "time_s")
      implied = max(frame * hop + offset, 0.0) / rate  # as exported: never before 0
      if abs(time_s - implied) * rate > 0.5:
        raise UserError(f"{where}: time_s {time_s} disagrees with frame/offset ({implied:.6f} s); "
                        f"edit one of them and delete the other")
    frames.append(frame)
    offsets.append(offset)
    gains.append(gain)
    vectors.append(vector)
  try:
    return events_lib.EventSet(
        frames=np.array(frames, np.int64), offsets=np.array(offsets, np.float32),
        gains=np.array(gains, np.float32),
        vectors=np.array(vectors, np.float32).reshape(len(rows), dim),
        model_id=model_id, **values)
  except ValueError as e:
    raise UserError(f"{source}: {e}; fix the table") from None
