"""The embedded offline dataset: classical scores from the music21 corpus, rendered to audio.

Nothing is downloaded.  The music21 wheel ships the scores (Bach chorales, Mozart, Haydn and
Beethoven quartets, ...), the pretty_midi wheel ships a General MIDI soundfont (TimGM6mb.sf2), and
tinysoundfont renders MIDI with it.  A build exports each movement to MIDI, gives every part an
instrument from a MusicNet-like palette, renders it at 22050 Hz mono, and writes

    ROOT/train/<name>.wav, ROOT/train/<name>.csv   16-bit WAV + note labels (MusicNet CSV format)
    ROOT/test/<name>.wav,  ROOT/test/<name>.csv
    ROOT/manifest.json                             one entry per rendered movement
    ROOT/.complete-<preset>                        written last: the preset finished

Labels use MusicNet's columns: start_time,end_time (samples at the rendered rate), instrument
(1-based GM program), note (MIDI pitch), start_beat (quarter notes from the start), end_beat (the
duration in beats, as in MusicNet), note_value.

Repeats are not expanded: each passage is played once.  Expansion is most of music21's export
time and fails outright on some corpus scores ("badly formed repeats"), and a repeat only
duplicates audio.  Durations are therefore shorter than a performance with repeats.

The split is by work (a whole quartet, or one chorale), from a hash of its corpus path, so the
same work lands in the same split for every preset and machine.

    python -m sparse_jax build-data --preset small [--root DIR] [--workers 2]
    python -m sparse_jax build-data --root DIR --instruments gm --percussion \
        [--soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2]     # varied instruments and drums
"""
import collections
import csv
import glob
import hashlib
import importlib
import importlib.util
import io
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import sys
import time
import warnings

import numpy as np

from sparse_jax import audio_io, files, progress
from sparse_jax.data.segments import AudioItem, AudioSource
from sparse_jax.errors import UserError

SAMPLE_RATE = 22050
# Bump when rendering changes: entries rendered by another version are rendered again.
RENDER_VERSION = 1
PRESETS = ('tiny', 'small', 'full')
DEFAULT_TIMEOUT_S = 120.0
TEST_FRACTION = 0.10

_SYNTH_GAIN_DB = -12.0  # At 0 dB TinySoundFont peaks near 2.5 on a quartet.
_PEAK = 10.0 ** (-1.0 / 20.0)  # Normalise to -1 dBFS.
_RELEASE_S = 3.0  # Rendered past the last MIDI event so release tails are not cut.
_TRIM_DB = -60.0  # Trailing samples below this (relative to the peak) are trimmed...
_TRIM_PAD_S = 0.1  # ...keeping this much after the last louder sample.
_BLOCK = 1 << 16  # Render block, in samples.

# Composers with instrumental (or chorale) music in the corpus: the 'full' preset.
_COMPOSERS_FULL = ('bach', 'beethoven', 'mozart', 'haydn', 'schumann_robert', 'schumann_clara',
                   'weber', 'handel', 'joplin', 'schubert', 'verdi', 'corelli', 'chopin', 'cpebach')
# 'small': half the chorales, the Mozart and Haydn quartets and a few short piano and string
# pieces: about 3 hours of audio from about 7 CPU-minutes (the chorales are the cheapest audio).
_SMALL_COMPOSERS = ('bach', 'mozart', 'haydn')
_SMALL_CHORALE_FRACTION = 0.5
_SMALL_EXTRA = ('joplin/maple_leaf_rag.mxl', 'schumann_clara/polonaise_op1n1.mxl',
                'schumann_clara/polonaise_op1n2.mxl', 'corelli/opus3no1/1grave.xml',
                'cpebach/h186.mxl')
# Op. 132 is one file for the whole quartet and its export alone takes over two minutes.
_SKIP = ('beethoven/opus132.mxl',)
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


def default_root() -> pathlib.Path:
  """$SPARSE_JAX_DATA, else ~/.cache/sparse_jax/classical."""
  env = os.environ.get('SPARSE_JAX_DATA')
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path.home() / '.cache' / 'sparse_jax' / 'classical'


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


# ------------------------------------------------------------------------------------------------
# Which works, and which split.


def _corpus_dir() -> str:
  from music21 import common  # pylint: disable=g-import-not-at-top
  return str(common.getCorpusFilePath())


def _core_paths() -> list:
  """Every score of music21's core corpus, relative to the corpus folder, '/'-separated."""
  from music21 import corpus  # pylint: disable=g-import-not-at-top
  base = _corpus_dir()
  return sorted(os.path.relpath(str(p), base).replace(os.sep, '/') for p in corpus.getCorePaths())


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


def candidate_works() -> list:
  """All movements the 'full' preset renders, in corpus order (one encoding per score)."""
  by_stem = collections.OrderedDict()
  for rel in _core_paths():
    stem, ext = os.path.splitext(rel)
    if (composer_of(rel) not in _COMPOSERS_FULL or '/choraleAnalyses/' in rel or rel in _SKIP or
        ext not in _EXT_PREFERENCE):
      continue
    by_stem.setdefault(stem, []).append(rel)
  return [min(paths, key=lambda p: _EXT_PREFERENCE.index(os.path.splitext(p)[1]))
          for paths in by_stem.values()]


def assign_splits(corpus_paths) -> dict:
  """{corpus_path: 'train' | 'test'}, by work, about TEST_FRACTION test.

  Within a composer's n works, those whose hash falls below TEST_FRACTION go to test, topped up
  (lowest hashes first) to at least max(1, round(TEST_FRACTION * n)), so every large group is
  tested.  A composer with fewer than 4 works stays in train: one of two quartets in test would
  be half of that composer.  Computed over `candidate_works()`, a work's split does not depend on
  the preset.
  """
  works = collections.defaultdict(set)
  for p in corpus_paths:
    works[composer_of(p)].add(work_of(p))
  test_works = set()
  for group in works.values():
    ranked = sorted(group, key=_hash01)
    if len(ranked) < 4:
      continue
    n_test = sum(_hash01(w) < TEST_FRACTION for w in ranked)
    n_test = max(n_test, round(TEST_FRACTION * len(ranked)), 1)
    test_works.update(ranked[:n_test])
  return {p: ('test' if work_of(p) in test_works else 'train') for p in corpus_paths}


def list_works(preset: str) -> list:
  """The corpus paths a preset renders.

  Args:
    preset: 'tiny' (6 chorales: 4 train, 2 test; seconds to build), 'small' (half the chorales,
      the Mozart and Haydn quartets, a few short pieces), or 'full' (every candidate work).
  """
  if preset not in PRESETS:
    raise UserError(f'unknown preset {preset!r}; use one of {", ".join(PRESETS)}')
  works = candidate_works()
  if preset == 'full':
    return works
  # Each preset contains the smaller ones, so building a larger one later reuses the renders.
  # The chorale half is chosen by its own hash, independent of the split hash, so both splits
  # shrink alike.
  small = [p for p in works
           if (composer_of(p) in _SMALL_COMPOSERS or p in _SMALL_EXTRA) and
           (composer_of(p) != 'bach' or _hash01(work_of(p) + '#small') < _SMALL_CHORALE_FRACTION)]
  if preset == 'small':
    return small
  splits = assign_splits(works)
  chorales = [p for p in small if composer_of(p) == 'bach' and p.endswith('.mxl')]
  return ([p for p in chorales if splits[p] == 'train'][:4] +
          [p for p in chorales if splits[p] == 'test'][:2])


# ------------------------------------------------------------------------------------------------
# Score -> MIDI with a chosen instrument per part.


def _parse_score(corpus_path: str):
  """Parses a corpus score given as 'bach/bwv66.6' or 'beethoven/opus18no1/movement1.mxl'."""
  from music21 import converter, corpus  # pylint: disable=g-import-not-at-top
  full = os.path.join(_corpus_dir(), corpus_path)
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
  from music21 import bar, repeat  # pylint: disable=g-import-not-at-top
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
  from music21 import midi  # pylint: disable=g-import-not-at-top
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
  import mido  # pylint: disable=g-import-not-at-top
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
  import mido  # pylint: disable=g-import-not-at-top
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
  import mido  # pylint: disable=g-import-not-at-top
  tpb = float(mid.ticks_per_beat)
  tempo, tick, seconds = 500000, 0, 0.0
  open_notes = collections.defaultdict(collections.deque)
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

_SOUNDFONT_BYTES = {}


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
  import tinysoundfont  # pylint: disable=g-import-not-at-top
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
  import mido  # pylint: disable=g-import-not-at-top
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


# ------------------------------------------------------------------------------------------------
# The build: a pool of worker processes with a per-work timeout.


def _render_task(task) -> tuple:
  """Runs one task: ('ok', manifest entry) or ('error', one-line message)."""
  try:
    return ('ok', render_movement(task['corpus_path'], task['out_wav'], task['sample_rate'],
                                  task.get('style')))
  except Exception as e:  # pylint: disable=broad-except
    # Report any failure of one score and go on: one bad score must not stop the build.
    message = str(e).splitlines()[0][:300] if str(e) else ''
    return ('error', f'{type(e).__name__}: {message}')


def _worker(conn, handler):
  """Worker process loop: say 'ready' once imported, then answer each task with `handler`."""
  conn.send(('ready', os.getpid()))
  while True:
    try:
      task = conn.recv()
    except EOFError:
      return
    if task is None:
      return
    conn.send(handler(task))


class _Progress:
  """The build's progress bar (tqdm, sparse_jax/progress.py), weighted by each score's size so
  that the ETA follows the work rather than the count; the count and failures are in its label."""

  def __init__(self, total_cost: float, total_count: int, enabled: bool):
    self.total_count = total_count
    self.count = self.failed = 0
    self.bar = progress.bar(
        total_cost, self._label(), enabled=enabled,
        bar_format='{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]')

  def _label(self):
    return f'rendering {self.count}/{self.total_count} movements ({self.failed} failed)'

  def update(self, cost: float = 0.0, failed: bool = False, label: str = ''):
    self.count += cost > 0 or failed
    self.failed += failed
    self.bar.set_description_str(self._label(), refresh=False)
    self.bar.set_postfix_str(label[:30], refresh=False)
    self.bar.update(cost)

  def close(self):
    self.bar.close()


class _Pool:
  """Worker processes that each run one task at a time; a task over its time limit is killed.

  concurrent.futures cannot stop a running task, and one pathological score can take many
  minutes in music21, so each worker is a process we can kill and replace.  'spawn' keeps the
  workers independent of whatever threads the parent has (JAX, if it was imported).  A task's
  clock starts once its worker has finished importing, so start-up never counts against it.
  """

  _STARTUP_LIMIT_S = 120.0

  def __init__(self, n_workers: int, timeout_s: float, handler=None):
    self.ctx = multiprocessing.get_context('spawn')
    self.timeout_s = timeout_s
    # A top-level function (pickled by name into each worker): task -> (status, payload).
    self.handler = _render_task if handler is None else handler
    self.n_workers = max(1, n_workers)
    self.workers = []  # dicts: proc, conn, ready, spawned, task, started

  def _spawn(self):
    target = importlib.import_module('sparse_jax.data.classical')._worker
    parent, child = self.ctx.Pipe()
    proc = self.ctx.Process(target=target, args=(child, self.handler), daemon=True)
    proc.start()
    child.close()
    return {'proc': proc, 'conn': parent, 'ready': False, 'spawned': time.monotonic(),
            'task': None, 'started': 0.0}

  def _stop(self, worker, kill=False):
    if kill:
      worker['proc'].kill()
    else:
      try:
        worker['conn'].send(None)
      except (BrokenPipeError, OSError):
        worker['proc'].kill()
    worker['proc'].join(timeout=5)
    if worker['proc'].is_alive():
      worker['proc'].kill()
      worker['proc'].join()
    worker['conn'].close()

  def _discard(self, worker):
    """Kills a stuck or dead worker; the loop starts a fresh one if tasks remain."""
    self._stop(worker, kill=True)
    self.workers.remove(worker)

  @staticmethod
  def _startup_error(why: str) -> UserError:
    return UserError(f'the build\'s worker processes {why} (see any traceback above); run the '
                     'build from a script file or `python -m`, or pass workers=0 (--workers 0)')

  def run(self, tasks):
    """Yields (task, status, payload) as tasks finish; status is 'ok', 'error' or 'timeout'."""
    pending = collections.deque(tasks)
    try:
      while pending or any(w['task'] is not None for w in self.workers):
        while pending and len(self.workers) < self.n_workers:
          self.workers.append(self._spawn())
        for w in self.workers:
          if w['task'] is None and pending:
            w['task'], w['started'] = pending.popleft(), time.monotonic()
            w['conn'].send(w['task'])
        busy = [w for w in self.workers if w['task'] is not None]
        # Wake at the nearest deadline, so a task is stopped on time rather than at the next poll.
        now = time.monotonic()
        left = [w['started'] + self.timeout_s - now for w in busy if w['ready']]
        wait_s = min([0.5] + left)
        ready = multiprocessing.connection.wait([w['conn'] for w in busy],
                                                timeout=max(wait_s, 0.0))
        for w in busy:
          task, now = w['task'], time.monotonic()
          if w['conn'] in ready:
            try:
              status, payload = w['conn'].recv()
            except (EOFError, OSError):
              if not w['ready']:
                raise self._startup_error('exit during start-up') from None
              status, payload = 'error', f'worker process died (exit code {w["proc"].exitcode})'
              self._discard(w)
            if status == 'ready':
              w['ready'], w['started'] = True, now
              continue
            w['task'] = None
            if status == 'ok' and now - w['started'] > self.timeout_s:
              # The deadline holds on arrival too: a result that comes in late is refused, so the
              # outcome depends on the limit, not on when this loop happened to look.
              status, payload = 'timeout', f'took over {self.timeout_s:g} s'
            yield task, status, payload
          elif not w['ready']:
            if now - w['spawned'] > self._STARTUP_LIMIT_S:
              raise self._startup_error(f'did not start within {self._STARTUP_LIMIT_S:g} s')
          elif now - w['started'] > self.timeout_s:
            self._discard(w)
            w['task'] = None
            yield task, 'timeout', f'took over {self.timeout_s:g} s'
        # Let idle workers go once nothing is left for them.
        if not pending:
          for w in [w for w in self.workers if w['task'] is None]:
            self._stop(w)
            self.workers.remove(w)
    finally:
      for w in self.workers:
        self._stop(w, kill=True)
      self.workers = []


def _run_inline(tasks):
  """Like _Pool.run, in this process and without timeouts (workers=0: debugging, notebooks)."""
  for task in tasks:
    status, payload = _render_task(task)
    yield task, status, payload


def _load_manifest(root: pathlib.Path) -> dict:
  path = root / 'manifest.json'
  if path.exists():
    try:
      manifest = json.loads(path.read_text())
      if manifest.get('format') == 'sparse_jax.classical':
        manifest.setdefault('works', {})
        manifest.setdefault('failed', {})
        return manifest
    except (ValueError, OSError):
      pass  # Damaged: rebuild the index; rendered files are re-rendered (they are cheap).
  return {'format': 'sparse_jax.classical', 'sample_rate': SAMPLE_RATE,
          'soundfont': 'TimGM6mb.sf2', 'works': {}, 'failed': {}}


def _save_manifest(root: pathlib.Path, manifest: dict):
  works = manifest['works']
  manifest['works'] = {k: works[k] for k in sorted(works)}
  manifest['summary'] = {
      split: {'works': sum(w['split'] == split for w in works.values()),
              'hours': round(sum(w['seconds'] for w in works.values()
                                 if w['split'] == split) / 3600, 3)}
      for split in ('train', 'test')}
  with files.atomic_output(root / 'manifest.json') as tmp:
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump(manifest, f, indent=1)


def _is_done(root: pathlib.Path, name: str, entry) -> bool:
  if not entry or entry.get('render_version') != RENDER_VERSION:
    return False
  # Not Path.with_suffix: names such as 'bach_bwv66.6' contain dots.
  folder = root / entry['split']
  return (folder / (name + '.wav')).exists() and (folder / (name + '.csv')).exists()


def is_built(root) -> bool:
  """Whether some preset finished building at root."""
  root = pathlib.Path(root)
  return (root / 'manifest.json').exists() and bool(list(root.glob('.complete-*')))


def build(root=None, *, preset: str = 'small', workers: int = 2, progress: bool = True,
          timeout_s: float = DEFAULT_TIMEOUT_S, retry_failed: bool = False,
          style: dict | None = None) -> pathlib.Path:
  """Builds (or finishes building) the dataset.  Safe to interrupt and run again.

  Works already rendered are skipped, as are works that failed before (unless retry_failed).
  Each file is written atomically and the manifest after every work, so an interrupted build
  loses at most the works in flight.  `ROOT/.complete-<preset>` is written at the end.

  Args:
    root: output folder (None -> default_root()).
    preset: 'tiny', 'small' or 'full' (see list_works).
    workers: worker processes (the export is single-threaded CPU work); 0 renders in this
      process, without timeouts.
    progress: draw a progress bar on stderr.
    timeout_s: a work still exporting/rendering after this long is killed and recorded as failed.
    retry_failed: try works that failed in an earlier build again.
    style: `style_of(instruments, percussion, soundfont)`; a root holds one style, so another
      style needs another root (refused in one line otherwise).

  Returns:
    The root folder.
  """
  style = style or style_of()
  root = pathlib.Path(root).expanduser() if root else default_root()
  try:
    for split in ('train', 'test'):
      (root / split).mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f'{root}: cannot create the dataset folder ({e.strerror}); '
                    'pass --root DIR or set SPARSE_JAX_DATA to a writable folder') from e
  soundfont_path()  # Fail early, with the fix, if the soundfont is missing.
  works = list_works(preset)
  splits = assign_splits(candidate_works())
  manifest = _load_manifest(root)
  recorded = manifest.get('style', style_of())
  if manifest['works'] and recorded != style:
    raise UserError(f'{root} holds renders of another style ({recorded}); pass another --root '
                    'for this one (a root holds one style)')
  manifest['style'] = style
  if retry_failed:
    manifest['failed'] = {}
  corpus_dir = _corpus_dir()
  tasks = []
  for p in works:
    name = output_name(p)
    if _is_done(root, name, manifest['works'].get(name)) or p in manifest['failed']:
      continue
    cost = os.path.getsize(os.path.join(corpus_dir, p))
    tasks.append({'corpus_path': p, 'name': name, 'split': splits[p], 'cost': cost,
                  'out_wav': str(root / splits[p] / (name + '.wav')), 'sample_rate': SAMPLE_RATE,
                  'style': style})
  # Longest first, so the two workers finish together rather than one waiting on a late quartet.
  tasks.sort(key=lambda t: -t['cost'])
  bar = _Progress(sum(t['cost'] for t in tasks), len(tasks), progress and bool(tasks))
  if progress:
    skipped = len(works) - len(tasks)
    print(f'classical/{preset}: {len(tasks)} movements to render, {skipped} already done or '
          f'failed before, into {root}', file=sys.stderr)
  start, last_save = time.monotonic(), 0.0
  try:
    if not tasks:
      results = ()  # Nothing to render: start no workers at all.
    elif workers > 0:
      results = _Pool(workers, timeout_s).run(tasks)
    else:
      results = _run_inline(tasks)
    for task, status, payload in results:
      p, name = task['corpus_path'], task['name']
      if status == 'ok':
        manifest['works'][name] = {'corpus_path': p, 'work': work_of(p), 'composer': composer_of(p),
                                   'split': task['split'], 'render_version': RENDER_VERSION,
                                   **payload}
      else:
        manifest['failed'][p] = {'error': payload, 'timeout_s': timeout_s}
      bar.update(task['cost'], status != 'ok', name)
      if time.monotonic() - last_save > 2.0:
        _save_manifest(root, manifest)
        last_save = time.monotonic()
  finally:
    bar.close()
    _save_manifest(root, manifest)
  # A build killed hard (no chance to save the manifest) can leave a rendered movement without an
  # entry: remove such orphans so that make_source, which lists the folders, matches the manifest.
  valid = {(w['split'], n) for n, w in manifest['works'].items()}
  ours = {output_name(p) for p in candidate_works()}
  for split in ('train', 'test'):
    for wav in (root / split).glob('*.wav'):
      if wav.stem in ours and (split, wav.stem) not in valid:
        wav.unlink()
        wav.with_suffix('.csv').unlink(missing_ok=True)
  rendered = [manifest['works'][output_name(p)] for p in works
              if output_name(p) in manifest['works']]
  summary = {'preset': preset, 'works': len(rendered),
             'failed': sorted(p for p in works if p in manifest['failed']),
             'hours': round(sum(w['seconds'] for w in rendered) / 3600, 3),
             'wall_s': round(time.monotonic() - start, 1)}
  with files.atomic_output(root / f'.complete-{preset}') as tmp:
    pathlib.Path(tmp).write_text(json.dumps(summary, indent=1))
  if progress:
    print(f'classical/{preset}: {summary["works"]} movements, {summary["hours"]:.2f} h of audio, '
          f'{len(summary["failed"])} failed, in {summary["wall_s"]:.0f} s -> {root}',
          file=sys.stderr)
  return root


# ------------------------------------------------------------------------------------------------
# Reading it back.


def make_source(root: str, *, sample_rate: int, split: str, cache_dir: str = '') -> AudioSource:
  """One split of a built dataset as an AudioSource.

  Args:
    root: the build folder ('' -> default_root()).
    sample_rate: target rate in Hz.
    split: 'train' or 'test'.
    cache_dir: cache root ('' -> default).

  Raises:
    UserError: not built (with the command that builds it), or the split is empty.
  """
  root_path = pathlib.Path(root).expanduser() if root else default_root()
  if not is_built(root_path):
    hint = ('run `python -m sparse_jax build-data`' if not root else
            f'run `python -m sparse_jax build-data --preset small --root {root_path}`')
    raise UserError(f'{root_path}: the classical dataset is not built (or its build was '
                    f'interrupted); {hint} (about 5 minutes)')
  files = sorted(glob.glob(str(root_path / split / '*.wav')))
  if not files:
    raise UserError(f'{root_path}: the classical {split} split has no files; rebuild with '
                    '`python -m sparse_jax build-data`')
  items = [AudioItem(name=os.path.splitext(os.path.basename(f))[0], path=f) for f in files]
  return AudioSource(items, sample_rate=sample_rate, cache_dir=cache_dir,
                     description=f'classical {split} split at {root_path}')
