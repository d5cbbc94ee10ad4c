"""Scores to audio: MIDI with chosen instruments (and drums), rendered by a GM soundfont.

`render_movement(corpus_path, out_wav, style=style_of(...))` exports one music21 corpus score to
MIDI, gives every part an instrument (a MusicNet-like palette, or General MIDI programs drawn per
work and part), optionally adds a drum track, renders it with TinySoundFont (TimGM6mb inside
pretty_midi, or any .sf2) at 22050 Hz mono, and writes the WAV and its MusicNet-style note labels.
Which scores, which split and the build itself are `classical.py`'s.

Corpus paths name movements ('beethoven/opus18no1/movement2.mxl'); choices are seeded per *work*
('beethoven/opus18no1'), so the movements of a quartet keep their instruments.
"""
import collections
import csv
import hashlib
import importlib.util
import io
import math
import os
import time
import warnings

import numpy as np

from sparse_jax import audio_io, files
from sparse_jax.errors import UserError

SAMPLE_RATE = 22050
_SYNTH_GAIN_DB = -12.0  # At 0 dB TinySoundFont peaks near 2.5 on a quartet.
_PEAK = 10.0 ** (-1.0 / 20.0)  # Normalise to -1 dBFS.
_RELEASE_S = 3.0  # Rendered past the last MIDI event so release tails are not cut.
_TRIM_DB = -60.0  # Trailing samples below this (relative to the peak) are trimmed...
_TRIM_PAD_S = 0.1  # ...keeping this much after the last louder sample.
_BLOCK = 1 << 16  # Render block, in samples.

# The same score in several encodings: keep the first in this order.
_EXT_PREFERENCE = ('.mxl', '.musicxml', '.xml', '.krn')
_SCORE_EXTS = _EXT_PREFERENCE + ('.abc', '.mid', '.midi', '.rntxt', '.mei', '.capx', '.md')

# Ensembles for works written for voices (the chorales), which carry no instruments.  Programs
# are 0-based GM, listed from the top voice to the bass.  All are MusicNet instruments except the
# organ, the chorales' natural instrument.
_ENSEMBLES = (
    ('piano', (0, 0, 0, 0)),
    ('string quartet', (40, 40, 41, 42)),
    ('organ', (19, 19, 19, 19)),
    ('woodwind quartet', (73, 68, 71, 70)),
    ('reeds and horn', (68, 71, 60, 70)),
    ('strings and winds', (40, 71, 41, 70)),
)
# A solo voice in an accompanied song takes one of these melody instruments.
_MELODY_PROGRAMS = (71, 68, 73, 40)
# Part/instrument name keywords -> GM program; the first match wins, so the order matters
# ('violoncello' before 'violin', 'bassoon' before the vocal 'bass').
_KEYWORD_PROGRAMS = (
    (('violoncell', 'cello'), 42),
    (('violone', 'contrabass', 'double bass', 'kontrabass'), 43),
    (('viola',), 41),
    (('violin', 'violino'), 40),
    (('clarinet', 'klarinette'), 71),
    (('bassoon', 'fagott'), 70),
    (('oboe',), 68),
    (('flute', 'flauto', 'flöte'), 73),
    (('horn', 'corno'), 60),
    (('harpsichord', 'cembalo'), 6),
    (('organ', 'orgel'), 19),
    (('piano', 'klavier', 'keyboard'), 0),
)
_VOCAL_KEYWORDS = ('voice', 'vocal', 'choir', 'soprano', 'alto', 'tenor', 'bass', 'canto', 'chorus')
_NOTE_VALUES = ((4.0, 'Whole'), (3.0, 'Dotted Half'), (2.0, 'Half'), (1.5, 'Dotted Quarter'),
                (1.0, 'Quarter'), (0.75, 'Dotted Eighth'), (2.0 / 3.0, 'Triplet Quarter'),
                (0.5, 'Eighth'), (0.375, 'Dotted Sixteenth'), (1.0 / 3.0, 'Triplet'),
                (0.25, 'Sixteenth'), (1.0 / 6.0, 'Triplet Sixteenth'), (0.125, 'Thirty Second'),
                (0.0625, 'Sixty Fourth'))
_LABEL_HEADER = ('start_time', 'end_time', 'instrument', 'note', 'start_beat', 'end_beat',
                 'note_value')


# How a build renders (issue: data that sounds like the real world).  'palette' keeps each part's
# named instrument or a MusicNet-like ensemble (the default, what the quickstart trains on); 'gm'
# draws every part's program from the 120 melodic General MIDI programs, seeded per work and part.
INSTRUMENT_CHOICES = ('palette', 'gm')
# With percussion, about this share of works (chosen by a hash of the work) gets a GM drum track.
PERCUSSION_SHARE = 0.5
# GM percussion keys (channel 10): kick, snare, closed and open hi-hat, ride, crash.
_KICK, _SNARE, _HAT, _OPEN_HAT, _RIDE, _CRASH = 36, 38, 42, 46, 51, 49


def style_of(instruments: str = 'palette', percussion: bool = False, soundfont: str | None = None):
  """The render settings a build records in its manifest; a root holds one style only."""
  if instruments not in INSTRUMENT_CHOICES:
    raise UserError(f'--instruments {instruments!r}: use one of {", ".join(INSTRUMENT_CHOICES)}')
  if soundfont is not None and not os.path.isfile(soundfont):
    raise UserError(f'--soundfont {soundfont}: no such file; on Debian/Ubuntu `apt-get install '
                    'fluid-soundfont-gm` installs /usr/share/sounds/sf2/FluidR3_GM.sf2')
  return {'instruments': instruments, 'percussion': bool(percussion),
          'soundfont': os.path.abspath(soundfont) if soundfont else None}


def soundfont_path() -> str:
  """TimGM6mb.sf2 from inside the installed pretty_midi package (found without importing it)."""
  spec = importlib.util.find_spec('pretty_midi')
  folders = list(spec.submodule_search_locations or []) if spec else []
  for folder in folders:
    path = os.path.join(folder, 'TimGM6mb.sf2')
    if os.path.isfile(path):
      return path
  raise UserError('TimGM6mb.sf2 not found: it ships inside pretty_midi; run '
                  '`pip install "pretty_midi>=0.2.10"`')


def corpus_dir() -> str:
  from music21 import common
  return str(common.getCorpusFilePath())


def _strip_ext(corpus_path: str) -> str:
  """Drops a score extension only: 'bach/bwv66.6' has none ('.6' is part of the BWV number)."""
  stem, ext = os.path.splitext(corpus_path)
  return stem if ext.lower() in _SCORE_EXTS else corpus_path


def composer_of(corpus_path: str) -> str:
  return corpus_path.split('/')[0]


def work_of(corpus_path: str) -> str:
  """The work a movement belongs to: 'beethoven/opus18no1/movement2.mxl' -> 'beethoven/opus18no1'.

  Split and instrumentation are decided per work, so the movements of a quartet stay together.
  """
  return '/'.join(_strip_ext(corpus_path).split('/')[:2])


def output_name(corpus_path: str) -> str:
  """File stem of a movement: 'haydn/opus1no1/movement2.mxl' -> 'haydn_opus1no1_movement2'."""
  return _strip_ext(corpus_path).replace('/', '_')


def _hash01(text: str) -> float:
  """A stable pseudo-random number in [0, 1) from a string (the same on every machine)."""
  return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / float(1 << 48)


# ------------------------------------------------------------------------------------------------
# Score -> MIDI with a chosen instrument per part.


def _parse_score(corpus_path: str):
  """Parses a corpus score given as 'bach/bwv66.6' or 'beethoven/opus18no1/movement1.mxl'."""
  from music21 import converter, corpus
  full = os.path.join(corpus_dir(), corpus_path)
  candidates = [full] + [full + ext for ext in _EXT_PREFERENCE]
  path = next((c for c in candidates if os.path.isfile(c)), None)
  if path is not None:
    # Each score is parsed once per build: music21's pickle cache would only cost a write.
    return converter.parse(path, forceSource=True, storePickle=False)
  try:
    return corpus.parse(corpus_path)
  except Exception as e:  # music21 raises several unrelated types for a bad name.
    raise UserError(f'{corpus_path}: not a score in the music21 corpus ({e}); use a path such as '
                    "'bach/bwv66.6'") from e


def _strip_repeats(score):
  """Removes repeat barlines and repeat expressions, for scores whose repeats cannot expand."""
  from music21 import bar, repeat
  for measure in score.recurse().getElementsByClass('Measure'):
    if isinstance(measure.leftBarline, bar.Repeat):
      measure.leftBarline = None
    if isinstance(measure.rightBarline, bar.Repeat):
      measure.rightBarline = None
  for expr in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
    expr.activeSite.remove(expr)


def _score_midi_bytes(score) -> bytes:
  """Standard MIDI file bytes for a score, each passage played once (repeats are not expanded).

  Expanding repeats is most of music21's export time (it deep-copies the score, 3-4x slower
  overall), some corpus scores have repeats it cannot expand at all ("badly formed repeats"), and
  for training data a repeat only duplicates audio: so repeats are dropped before the export.
  """
  from music21 import midi
  _strip_repeats(score)
  return midi.translate.streamToMidiFile(score).writestr()


def _keyword_program(text: str):
  text = text.lower()
  for keywords, program in _KEYWORD_PROGRAMS:
    if any(k in text for k in keywords):
      return program
  return None


def _is_vocal(text: str) -> bool:
  text = text.lower()
  return any(k in text for k in _VOCAL_KEYWORDS)


def _part_texts(score) -> list:
  """For each part, its name plus its instrument's name (what the keyword rules look at)."""
  texts = []
  for part in score.parts:
    inst = part.getInstrument(returnDefault=False)
    names = [part.partName, getattr(inst, 'instrumentName', None), getattr(inst, 'partName', None)]
    texts.append(' '.join(str(n) for n in names if n))
  return texts


def choose_programs(corpus_path: str, part_texts) -> tuple:
  """Picks a 0-based GM program for each part.

  Named instruments keep their instrument.  A work written only for voices (or with no names at
  all: the chorales) is given one ensemble from _ENSEMBLES, chosen by a hash of the work, voices
  mapped top to bottom.  A solo voice beside instruments becomes a melody instrument.

  Args:
    corpus_path: the movement (its work seeds the choices).
    part_texts: per part, the part and instrument names.

  Returns:
    (programs, ensemble name or '').
  """
  work = work_of(corpus_path)
  keyword = [_keyword_program(t) for t in part_texts]
  vocal = [(k is None and _is_vocal(t)) for k, t in zip(keyword, part_texts)]
  unnamed = [k is None and not v for k, v in zip(keyword, vocal)]
  if part_texts and all(v or u for v, u in zip(vocal, unnamed)):
    name, palette = _ENSEMBLES[int(_hash01(work + '#ensemble') * len(_ENSEMBLES))]
    n = len(part_texts)
    slots = [round(j * (len(palette) - 1) / (n - 1)) if n > 1 else 0 for j in range(n)]
    return tuple(palette[s] for s in slots), name
  melody = _MELODY_PROGRAMS[int(_hash01(work + '#melody') * len(_MELODY_PROGRAMS))]
  programs = []
  for k, v in zip(keyword, vocal):
    programs.append(k if k is not None else (melody if v else 0))
  return tuple(programs), ''


def gm_programs(corpus_path: str, n_parts: int) -> tuple:
  """A melodic GM program (0-119; 120-127 are sound effects) for each part, seeded per work and
  part, so every movement of a quartet keeps its instruments."""
  work = work_of(corpus_path)
  return tuple(int(_hash01(f'{work}#gm#{j}') * 120) for j in range(n_parts))


def add_percussion(mid, corpus_path: str) -> bool:
  """Adds a GM drum track (channel 10) under a seeded groove to about PERCUSSION_SHARE of works.

  The groove follows the score's beat (MIDI ticks per quarter note): a kick, a snare, and a hi-hat
  or ride on the eighths, with velocities and fills drawn from the work's own seed; a crash opens
  the piece.  Returns whether a track was added.
  """
  import mido
  work = work_of(corpus_path)
  if _hash01(work + '#drums') >= PERCUSSION_SHARE:
    return False
  end = max((sum(m.time for m in tr) for tr in mid.tracks), default=0)
  beat = mid.ticks_per_beat
  if end < beat:
    return False
  rng = np.random.default_rng(int(_hash01(work + '#groove') * 2**32))
  cymbal = _RIDE if rng.random() < 0.3 else _HAT
  hits = [(0, _CRASH, 100)]
  for eighth in range(int(end // (beat // 2))):
    t, on_beat = eighth * (beat // 2), eighth % 2 == 0
    quarter = eighth // 2
    if on_beat and quarter % 2 == 0:
      hits.append((t, _KICK, int(rng.integers(90, 120))))
    if on_beat and quarter % 2 == 1:
      hits.append((t, _SNARE, int(rng.integers(80, 115))))
    if not on_beat and rng.random() < 0.15:
      hits.append((t, _KICK, int(rng.integers(60, 90))))  # a syncopated kick now and then
    hat = _OPEN_HAT if (cymbal == _HAT and rng.random() < 0.08) else cymbal
    hits.append((t, hat, int(rng.integers(50, 85 if on_beat else 70))))
  track = mido.MidiTrack()
  events = sorted([(t, 'note_on', k, v) for t, k, v in hits] +
                  [(t + beat // 4, 'note_off', k, 0) for t, k, _ in hits])
  now = 0
  for t, kind, key, velocity in events:
    track.append(mido.Message(kind, channel=9, note=key, velocity=velocity, time=t - now))
    now = t
  mid.tracks.append(track)
  return True


def _assign_channels(mid, track_programs):
  """Gives every note-bearing track its own channel and program, in place.

  music21 often puts all parts on channel 0 (so one program change overrides the others) or on
  odd channels; one channel per track, skipping the GM drum channel 10, makes the instruments
  independent.

  Args:
    mid: a mido.MidiFile.
    track_programs: {track index: program}; tracks not listed keep program 0.

  Returns:
    {channel: program} for the channels used.
  """
  import mido
  channels = [c for c in range(16) if c != 9]
  used = {}
  note_tracks = [k for k, tr in enumerate(mid.tracks) if any(m.type == 'note_on' for m in tr)]
  for j, k in enumerate(note_tracks):
    channel = channels[j % len(channels)]
    program = int(track_programs.get(k, 0))
    used[channel] = program
    new = mido.MidiTrack()
    new.append(mido.Message('program_change', channel=channel, program=program, time=0))
    carry = 0  # Delta time of dropped messages moves onto the next kept one.
    for msg in mid.tracks[k]:
      if msg.type == 'program_change':
        carry += msg.time
        continue
      if not msg.is_meta and hasattr(msg, 'channel'):
        msg = msg.copy(channel=channel, time=msg.time + carry)
      else:
        msg = msg.copy(time=msg.time + carry)
      carry = 0
      new.append(msg)
    mid.tracks[k] = new
  return used


def _note_value(beats: float) -> str:
  for value, name in _NOTE_VALUES:
    if abs(beats - value) < 1e-3:
      return name
  return 'Other'


def midi_labels(mid, channel_programs, sample_rate: int) -> list:
  """Note labels in MusicNet's format from a MIDI file.

  Args:
    mid: a mido.MidiFile (tempo changes are followed).
    channel_programs: {channel: 0-based program}.
    sample_rate: the rate start/end times are counted at.

  Returns:
    Rows (start_time, end_time, instrument (1-based), note, start_beat, end_beat (duration in
    beats), note_value), sorted by start time.
  """
  import mido
  tpb = float(mid.ticks_per_beat)
  tempo, tick, seconds = 500000, 0, 0.0
  open_notes: dict = collections.defaultdict(collections.deque)
  rows = []
  for msg in mido.merge_tracks(mid.tracks):
    if msg.time:
      tick += msg.time
      seconds += msg.time * tempo / (tpb * 1e6)
    if msg.type == 'set_tempo':
      tempo = msg.tempo
    elif getattr(msg, 'channel', None) == 9:
      continue  # the added drum track: MusicNet's labels have no percussion
    elif msg.type == 'note_on' and msg.velocity > 0:
      open_notes[(msg.channel, msg.note)].append((tick, seconds))
    elif msg.type in ('note_off', 'note_on') and open_notes[(msg.channel, msg.note)]:
      start_tick, start_s = open_notes[(msg.channel, msg.note)].popleft()
      beats = (tick - start_tick) / tpb
      rows.append((int(round(start_s * sample_rate)), int(round(seconds * sample_rate)),
                   channel_programs.get(msg.channel, 0) + 1, msg.note,
                   round(start_tick / tpb, 6), round(beats, 6), _note_value(beats)))
  rows.sort()
  return rows


# ------------------------------------------------------------------------------------------------
# MIDI -> audio.

_SOUNDFONT_BYTES: dict[str, bytes] = {}


def synthesize(midi_bytes: bytes, sample_rate: int = SAMPLE_RATE,
               soundfont: str | None = None) -> np.ndarray:
  """Renders a Standard MIDI file with TinySoundFont and a General MIDI soundfont.

  Args:
    midi_bytes: the MIDI file's bytes.
    sample_rate: output rate in Hz.
    soundfont: an .sf2 file (e.g. FluidR3_GM's sampled instruments); None: TimGM6mb, the small
      one inside pretty_midi.

  Returns:
    audio_T: float32 (T,) mono, not normalised, running _RELEASE_S past the last event.
  """
  import tinysoundfont
  path = soundfont or soundfont_path()
  if path not in _SOUNDFONT_BYTES:  # 6-140 MB: read once per process.
    with open(path, 'rb') as f:
      _SOUNDFONT_BYTES[path] = f.read()
  synth = tinysoundfont.Synth(samplerate=sample_rate, gain=_SYNTH_GAIN_DB)
  synth.sfload(_SOUNDFONT_BYTES[path])
  # GM's channel 10 is the drum kit (only `add_percussion` writes to it; parts never get it), but
  # TinySoundFont plays it as a melodic preset unless told.
  synth.program_change(9, 0, is_drums=True)
  events = sorted(tinysoundfont.midi.load_memory(midi_bytes), key=lambda e: e.t)
  # tinysoundfont's Sequencer rescans its whole event list on every callback (quadratic: most of
  # the time on a quartet movement), so events are scheduled here and only its dispatch is used.
  seq = tinysoundfont.Sequencer(synth)
  synth.callback = None
  end_s = (events[-1].t if events else 0.0) + _RELEASE_S
  n_total = int(math.ceil(end_s * sample_rate))
  audio_T = np.zeros(n_total, np.float32)
  pos = 0

  def render_until(stop):
    nonlocal pos
    while pos < stop:
      n = min(_BLOCK, stop - pos)
      stereo = np.frombuffer(synth.generate_simple(n), np.float32).reshape(-1, 2)
      audio_T[pos:pos + n] = stereo.mean(axis=1)
      pos += n

  for event in events:
    render_until(min(n_total, int(round(event.t * sample_rate))))
    seq.send(event)
  render_until(n_total)
  return audio_T


def _normalize_and_trim(audio_T: np.ndarray, sample_rate: int) -> np.ndarray:
  """Peak to -1 dBFS; trailing samples below -60 dB of the peak cut (keeping 0.1 s)."""
  peak = float(np.max(np.abs(audio_T))) if audio_T.size else 0.0
  if peak < 1e-6:
    raise RuntimeError('the render is silent')
  audio_T = audio_T * (_PEAK / peak)
  loud = np.flatnonzero(np.abs(audio_T) > _PEAK * 10.0 ** (_TRIM_DB / 20.0))
  end = min(audio_T.shape[0], int(loud[-1]) + 1 + int(_TRIM_PAD_S * sample_rate))
  return audio_T[:end]


def _write_labels(path: str, rows):
  with files.atomic_output(path) as tmp:
    with open(tmp, 'w', newline='', encoding='utf-8') as f:
      writer = csv.writer(f)
      writer.writerow(_LABEL_HEADER)
      writer.writerows(rows)


def render_movement(corpus_path: str, out_wav, sample_rate: int = SAMPLE_RATE,
                    style: dict | None = None) -> dict:
  """Exports one corpus score to MIDI, renders it and writes the WAV and its label CSV.

  Args:
    corpus_path: e.g. 'bach/bwv66.6' or 'beethoven/opus18no1/movement1.mxl'.
    out_wav: the .wav to write; the labels go to the same path with .csv.
    sample_rate: in Hz.
    style: `style_of(...)` (default: the palette, no percussion, TimGM6mb).

  Returns:
    A manifest entry: seconds, notes, programs, ensemble, export_s, render_s.
  """
  import mido
  style = style or style_of()
  out_wav = os.fspath(out_wav)
  t0 = time.monotonic()
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # music21 warns about every overfull measure.
    score = _parse_score(corpus_path)
    texts = _part_texts(score)
    programs, ensemble = choose_programs(corpus_path, texts)
    if style['instruments'] == 'gm':
      programs, ensemble = gm_programs(corpus_path, len(texts)), 'gm'
    midi_bytes = _score_midi_bytes(score)
  mid = mido.MidiFile(file=io.BytesIO(midi_bytes))
  # music21 writes a tempo track, then one track per part in score order.
  n_lead = len(mid.tracks) - len(texts)
  if n_lead >= 0:
    track_programs = {n_lead + j: p for j, p in enumerate(programs)}
  else:  # Unexpected layout: fall back to the track names.
    track_programs = {}
    for k, track in enumerate(mid.tracks):
      name = ' '.join(m.name for m in track if m.type == 'track_name')
      track_programs[k] = _keyword_program(name) or 0
  channel_programs = _assign_channels(mid, track_programs)
  # After the channels: the drums keep channel 10, which _assign_channels never gives a part.
  drums = style['percussion'] and add_percussion(mid, corpus_path)
  buf = io.BytesIO()
  mid.save(file=buf)
  t1 = time.monotonic()
  audio_T = _normalize_and_trim(synthesize(buf.getvalue(), sample_rate, style['soundfont']),
                                sample_rate)
  n = audio_T.shape[0]
  # Trimming only removed silence, but a note's nominal end may still lie past it.
  rows = [(min(r[0], n), min(r[1], n)) + r[2:]
          for r in midi_labels(mid, channel_programs, sample_rate)]
  audio_io.write_audio(out_wav, audio_T, sample_rate)
  _write_labels(os.path.splitext(out_wav)[0] + '.csv', rows)
  return {
      'seconds': round(n / sample_rate, 3), 'notes': len(rows),
      'programs': sorted(set(channel_programs.values())), 'ensemble': ensemble,
      'percussion': bool(drums),
      'export_s': round(t1 - t0, 2),
      'render_s': round(time.monotonic() - t1, 2),
  }


