"""Events read as notes: onset, pitch, loudness and length of each event, and a MIDI file of them.

An event has a time, a gain and a vector; a musician reads notes.  This module reads each event
as one: its onset is the event's start; its pitch is the one its model chose where the model has
a pitch control (a `harmonic` block: `Codec.midi_pitches`), else estimated from the event
rendered alone (librosa's pYIN over its first `PITCH_SECONDS`: the shipped model has no pitch
control, so the pitch is heard, not read from a parameter); its velocity maps the event's level
relative to the loudest event over `VELOCITY_RANGE_DB`; its length is how long the rendered event
stays within `DECAY_DB` of its peak.  An unpitched event (a noise burst, a click) is a percussion
hit: in the MIDI file it goes to the General MIDI drum channel.

`sparse-jax midi SONG.sjx SONG.mid` writes the file; `benchmarks/notes.py` scores the same
reading against labelled music.  Needs the `notes` extra (librosa, mido).
"""
import dataclasses
import warnings

import numpy as np

from sparse_jax import synth
from sparse_jax.errors import UserError

PITCH_SECONDS = 0.5          # the start of the event that its pitch is estimated from
FMIN_HZ, FMAX_HZ = 32.7, 2093.0  # C1 to C7
# pYIN's pitch grid in semitones: 25 cents keeps a note's nearest semitone, at a ninth of the
# time of librosa's default 10 cents (its Viterbi pass grows with the square of the grid).
PITCH_RESOLUTION = 0.25
VELOCITY_RANGE_DB = 40.0     # velocity 1 at 40 dB below the loudest event, 127 at it
DECAY_DB = 30.0              # an event's note ends when its level falls this far below its peak
VOICING_MIN = 0.35           # mean pYIN voiced probability below which an event is unpitched
JOIN_SECONDS = 0.05          # how near a sounding note an event must start to continue it
MIN_SECONDS = 0.05           # the shortest note written
DRUM_CHANNEL = 9             # General MIDI's percussion channel (10, counted from 1)
DRUM_NOTE = 38               # acoustic snare: where unpitched events go
MIDI_PPQ, MIDI_BPM = 480, 120
READ_BATCH = 64              # events rendered at once (64 x 3 s windows: about 17 MB)


def _libraries():
  try:
    import librosa
    import mido
  except ImportError as e:
    raise UserError(f"reading events as notes needs librosa and mido ({e.name} is missing): "
                    "pip install 'sparse-jax[notes]'") from None
  return librosa, mido


def check_installed() -> None:
  """UserError naming the install line unless librosa and mido import."""
  _libraries()


@dataclasses.dataclass(frozen=True)
class Notes:
  """E events read as notes (arrays of E, in the events' order).

  Attributes:
    onsets: start times in seconds.
    durations: seconds the rendered event stays within DECAY_DB of its peak (>= MIN_SECONDS).
    pitches_hz: estimated fundamental in Hz; NaN where the event is unpitched.
    voicing: pYIN's mean voiced probability over the analysed start (0 to 1); 1 or 0 (sounded
      or not) where the model chose the pitch.
    velocities: MIDI velocity (1 to 127) from the event's peak level.
    peaks: the rendered event's peak amplitude (with its gain).
  """
  onsets: np.ndarray
  durations: np.ndarray
  pitches_hz: np.ndarray
  voicing: np.ndarray
  velocities: np.ndarray
  peaks: np.ndarray

  @property
  def midi_pitches(self) -> np.ndarray:
    """Nearest MIDI note numbers (float, NaN where unpitched)."""
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.round(69 + 12 * np.log2(self.pitches_hz / 440.0))


def pitches_of(sounds_ExT: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
  """(f0 in Hz or NaN, mean voiced probability) of each sound's first PITCH_SECONDS, by pYIN in
  one batched call: the median f0 of its voiced frames; NaN where the sound is mostly unvoiced
  (mean voiced probability below VOICING_MIN) or silent."""
  librosa, _ = _libraries()
  clips = np.asarray(sounds_ExT, np.float64)[:, :int(PITCH_SECONDS * sample_rate)]
  pitch = np.full(len(clips), np.nan)
  voicing = np.zeros(len(clips))
  peaks = np.abs(clips).max(axis=1, initial=0.0)
  sounding = np.flatnonzero(peaks > 0)
  if sounding.size == 0 or clips.shape[1] < 2048:
    return pitch, voicing
  f0, voiced, prob = librosa.pyin(clips[sounding] / peaks[sounding, None], fmin=FMIN_HZ,
                                  fmax=FMAX_HZ, sr=sample_rate, frame_length=2048,
                                  hop_length=256, center=False, resolution=PITCH_RESOLUTION)
  voicing[sounding] = np.nanmean(prob, axis=1)
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no voiced frame
    median = np.nanmedian(np.where(voiced, f0, np.nan), axis=1)
  pitched = np.isfinite(median) & (voicing[sounding] >= VOICING_MIN)
  pitch[sounding[pitched]] = median[pitched]
  return pitch, voicing


def pitch_of(audio_T: np.ndarray, sample_rate: int) -> tuple[float, float]:
  """`pitches_of` of one sound."""
  pitch, voicing = pitches_of(np.asarray(audio_T)[None], sample_rate)
  return float(pitch[0]), float(voicing[0])


def decay_seconds(audio_T: np.ndarray, sample_rate: int, hop: int = 256) -> float:
  """How long a sound stays within DECAY_DB of its peak level (RMS over `hop`-sample frames)."""
  n = len(audio_T) // hop
  if n == 0:
    return MIN_SECONDS
  rms = np.sqrt(np.mean(np.square(audio_T[:n * hop].reshape(n, hop), dtype=np.float64), axis=1))
  peak = rms.max()
  if peak <= 0:
    return MIN_SECONDS
  loud = np.flatnonzero(rms >= peak * 10 ** (-DECAY_DB / 20))
  return max((loud[-1] + 1) * hop / sample_rate, MIN_SECONDS)


def read_notes(codec, events) -> Notes:
  """Each event of `events` (an EventSet of `codec`'s model) read as a note."""
  _libraries()
  e = len(events)
  if e == 0:
    empty = np.zeros(0)
    return Notes(empty, empty, empty, empty, np.zeros(0, np.int64), empty)
  # Each event alone, at the start of a window and with its gain: its own sound, from sample 0;
  # a batch at a time, so memory stays that of one batch however long the file.
  sr = events.sample_rate
  pitches, voicing, peaks, durations = (np.zeros(e) for _ in range(4))
  # A model with a pitch control (a `harmonic` block) says each event's note: read, not heard.
  chosen_midi = codec.midi_pitches(events.vectors)
  for lo in range(0, e, READ_BATCH):
    sl = slice(lo, min(lo + READ_BATCH, e))
    n = sl.stop - lo
    alone_BxT = codec.render(events.vectors[sl], np.zeros(n, np.int32), events.gains[sl],
                             np.zeros(n, np.float32))
    if chosen_midi is None:
      pitches[sl], voicing[sl] = pitches_of(alone_BxT, sr)
    else:
      pitches[sl] = synth.midi_to_hz(chosen_midi[sl])
      voicing[sl] = np.isfinite(chosen_midi[sl])
    peaks[sl] = np.abs(alone_BxT).max(axis=1)
    durations[sl] = [decay_seconds(a, sr) for a in alone_BxT]
  loudest = peaks.max()
  with np.errstate(divide="ignore"):
    level_db = 20 * np.log10(np.where(peaks > 0, peaks / max(loudest, 1e-30), 1e-30))
  velocities = np.clip(np.round(1 + 126 * (1 + level_db / VELOCITY_RANGE_DB)), 1, 127)
  return Notes(onsets=np.asarray(events.times_seconds, np.float64), durations=durations,
               pitches_hz=pitches, voicing=voicing, velocities=velocities.astype(np.int64),
               peaks=peaks)


def group(notes: Notes) -> tuple[Notes, np.ndarray]:
  """Runs of events that spell one note, read as one (see the module docstring).

  Returns:
    (the grouped notes in onset order: onset of the run's first event, end of its last, pitch
    and voicing of its loudest pitched event, velocity and peak of its loudest; the group index
    of every input event).
  """
  order = np.argsort(notes.onsets, kind="stable")
  midi = notes.midi_pitches
  groups: list[list[int]] = []
  ends: list[float] = []
  pitch_of_group: list[float] = []
  owner = np.zeros(len(order), np.int64)
  reachable: list[int] = []  # groups a later event may still join (onsets only grow)
  for i in order:
    t, end = notes.onsets[i], notes.onsets[i] + notes.durations[i]
    pitched = np.isfinite(midi[i])
    reachable = [g for g in reachable if max(ends[g], notes.onsets[groups[g][0]]) + JOIN_SECONDS
                 >= t]
    join = None
    for g in reversed(reachable):
      if pitched and pitch_of_group[g] == midi[i] and t <= ends[g] + JOIN_SECONDS:
        join = g
        break
      if not pitched and abs(t - notes.onsets[groups[g][0]]) <= JOIN_SECONDS:
        join = g
        break
      if not np.isfinite(pitch_of_group[g]) and pitched and (
          abs(t - notes.onsets[groups[g][0]]) <= JOIN_SECONDS):
        join, pitch_of_group[g] = g, midi[i]  # an attack, then its pitched body
        break
    if join is None:
      groups.append([i])
      ends.append(end)
      pitch_of_group.append(midi[i])
      owner[i] = len(groups) - 1
      reachable.append(len(groups) - 1)
    else:
      groups[join].append(i)
      ends[join] = max(ends[join], end)
      owner[i] = join
  out: dict[str, list] = {f.name: [] for f in dataclasses.fields(Notes)}
  for members, end in zip(groups, ends):
    m = np.asarray(members)
    loudest = m[np.argmax(notes.peaks[m])]
    voiced = m[np.isfinite(notes.pitches_hz[m])]
    tone = voiced[np.argmax(notes.peaks[voiced])] if voiced.size else loudest
    onset = notes.onsets[m].min()
    out["onsets"].append(onset)
    out["durations"].append(end - onset)
    out["pitches_hz"].append(notes.pitches_hz[tone])
    out["voicing"].append(notes.voicing[tone])
    out["velocities"].append(notes.velocities[loudest])
    out["peaks"].append(notes.peaks[loudest])
  grouped = Notes(**{k: np.asarray(v, np.int64 if k == "velocities" else np.float64)
                     for k, v in out.items()})
  return grouped, owner


def write_midi(path: str, notes: Notes, audible: np.ndarray | None = None) -> dict:
  """Writes `notes` as a type-1 MIDI file (one track; pitched notes on channel 1, unpitched on
  the drum channel) at MIDI_BPM, so one beat is 0.5 s.  `audible`: a mask of notes to write
  (default: those with a peak above zero).  Returns counts of what was written."""
  _, mido = _libraries()
  from sparse_jax import files
  keep = notes.peaks > 0 if audible is None else np.asarray(audible, bool)
  ticks_per_s = MIDI_PPQ * MIDI_BPM / 60.0
  messages = []  # (tick, order, message): note-offs before note-ons at the same tick
  pitched = drums = 0
  for i in np.flatnonzero(keep):
    midi = notes.midi_pitches[i]
    if np.isfinite(midi) and 0 <= midi <= 127:
      channel, note = 0, int(midi)
      pitched += 1
    else:
      channel, note = DRUM_CHANNEL, DRUM_NOTE
      drums += 1
    on = int(round(notes.onsets[i] * ticks_per_s))
    off = max(on + 1, int(round((notes.onsets[i] + notes.durations[i]) * ticks_per_s)))
    vel = int(notes.velocities[i])
    messages.append((on, 1, mido.Message("note_on", channel=channel, note=note, velocity=vel)))
    messages.append((off, 0, mido.Message("note_off", channel=channel, note=note, velocity=0)))
  messages.sort(key=lambda m: (m[0], m[1]))
  track = mido.MidiTrack()
  track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(MIDI_BPM), time=0))
  now = 0
  for tick, _, message in messages:
    track.append(message.copy(time=tick - now))
    now = tick
  midi_file = mido.MidiFile(type=1, ticks_per_beat=MIDI_PPQ)
  midi_file.tracks.append(track)
  with files.atomic_output(path) as tmp:
    midi_file.save(tmp)
  return {"notes": pitched, "percussion": drums}
