"""Events read as notes: pitch, length, grouping, MIDI, and the benchmark's scoring.

Known signals (a sine's pitch, an exponential decay's length), MIDI read back with mido, and the
benchmark's onset and note scores against mir_eval on hand-made cases.
"""
import mido
import numpy as np
import pytest

from benchmarks import notes as bench
from sparse_jax import notes
from sparse_jax.errors import UserError

SR = 22050


def _notes(onsets, midi, durations=None, peaks=None):
  n = len(onsets)
  hz = np.array([np.nan if m is None else 440.0 * 2 ** ((m - 69) / 12) for m in midi])
  return notes.Notes(onsets=np.asarray(onsets, float),
                     durations=np.asarray(durations if durations is not None else [0.1] * n, float),
                     pitches_hz=hz, voicing=np.where(np.isfinite(hz), 0.9, 0.1),
                     velocities=np.arange(1, n + 1) * 10,
                     peaks=np.asarray(peaks if peaks is not None else np.ones(n), float))


def test_pitch_of_a_tone_and_of_noise():
  t = np.arange(int(0.6 * SR)) / SR
  for hz in (110.0, 261.63, 880.0):
    tone = np.sin(2 * np.pi * hz * t) * np.exp(-2 * t)
    f0, voicing = notes.pitch_of(tone, SR)
    assert abs(1200 * np.log2(f0 / hz)) < 20 and voicing > 0.5
  f0, voicing = notes.pitch_of(np.random.default_rng(0).standard_normal(t.size), SR)
  assert np.isnan(f0) and voicing < notes.VOICING_MIN
  assert np.isnan(notes.pitch_of(np.zeros(100), SR)[0])


def test_decay_seconds_of_an_exponential():
  tau = 0.1
  t = np.arange(SR) / SR
  # exp(-t / tau) falls DECAY_DB below its start at tau * ln(10^(DECAY_DB / 20)).
  expected = tau * np.log(10 ** (notes.DECAY_DB / 20))
  assert notes.decay_seconds(np.exp(-t / tau), SR) == pytest.approx(expected, abs=0.015)
  assert notes.decay_seconds(np.zeros(SR), SR) == notes.MIN_SECONDS


def test_group_reads_a_run_of_same_pitch_events_as_one_note():
  # C4 re-attacked 3 times while it sounds, then E4; a click at E4's onset; C4 again after a gap.
  read = _notes(onsets=[0.0, 0.08, 0.16, 0.5, 0.51, 1.5],
                midi=[60, 60, 60, 64, None, 60],
                durations=[0.1, 0.1, 0.3, 0.2, 0.05, 0.1],
                peaks=[1.0, 2.0, 0.5, 1.0, 3.0, 1.0])
  grouped, owner = notes.group(read)
  np.testing.assert_array_equal(owner, [0, 0, 0, 1, 1, 2])
  np.testing.assert_allclose(grouped.onsets, [0.0, 0.5, 1.5])
  np.testing.assert_allclose(grouped.durations, [0.46, 0.2, 0.1])
  np.testing.assert_array_equal(grouped.midi_pitches, [60, 64, 60])
  # The loudest member gives the velocity (the click, for E4), the loudest pitched one the pitch.
  np.testing.assert_array_equal(grouped.velocities, [20, 50, 60])


def test_write_midi_reads_back(tmp_path):
  read = _notes(onsets=[0.0, 0.5, 1.0], midi=[60, None, 67], durations=[0.5, 0.1, 0.25])
  path = str(tmp_path / "x.mid")
  assert notes.write_midi(path, read) == {"notes": 2, "percussion": 1}
  midi = mido.MidiFile(path)
  per_s = midi.ticks_per_beat * notes.MIDI_BPM / 60
  now, seen = 0, []
  for message in midi.tracks[0]:
    now += message.time
    if message.type == "note_on":
      seen.append((now / per_s, message.channel, message.note, message.velocity))
  assert seen == [(0.0, 0, 60, 10), (0.5, notes.DRUM_CHANNEL, notes.DRUM_NOTE, 20),
                  (1.0, 0, 67, 30)]
  assert midi.length == pytest.approx(1.25)


def test_benchmark_scores_match_mir_eval_by_hand(tmp_path):
  # Reference: a chord at 0 s (one onset), notes at 1 s and 2 s.  Estimates: 0.02 (hit), 0.04
  # (merged into it), 1.2 (miss), 2.03 (hit): precision 2/3, recall 2/3.
  scores = bench.onset_scores([0.0, 0.0, 1.0, 2.0], [0.02, 0.04, 1.2, 2.03])
  assert scores["onset_precision"] == pytest.approx(2 / 3)
  assert scores["onset_recall"] == pytest.approx(2 / 3)
  # Notes: pitch within 50 cents counts; 60 cents off does not.
  ref_on, ref_off, ref_midi = np.array([0.0, 1.0]), np.array([0.5, 1.5]), np.array([60.0, 64.0])
  c4, e4 = 261.63, 329.63
  assert bench.note_f1(ref_on, ref_off, ref_midi, [0.01, 1.01], [c4, e4]) == pytest.approx(1.0)
  assert bench.note_f1(ref_on, ref_off, ref_midi, [0.01, 1.01],
                       [c4, e4 * 2 ** (60 / 1200)]) == pytest.approx(0.5)
  assert bench.note_f1(ref_on, ref_off, ref_midi, [0.01], [np.nan]) == 0.0
  csv = tmp_path / "a.csv"
  csv.write_text("start_time,end_time,instrument,note,start_beat,end_beat,note_value\n"
                 "0,11025,1,60,0.0,1.0,Quarter\n44100,55125,1,62,2.0,1.0,Quarter\n")
  onsets, offsets, midi = bench.read_labels(str(csv), 22050, seconds=1.5)
  np.testing.assert_allclose(onsets, [0.0])
  np.testing.assert_allclose(offsets, [0.5])
  assert midi.tolist() == [60.0]
  bad = tmp_path / "b.csv"
  bad.write_text("hello,world\n1,2\n")
  with pytest.raises(UserError, match="not MusicNet's label format"):
    bench.read_labels(str(bad), 22050, seconds=1.5)


@pytest.mark.slow
def test_a_melody_through_the_shipped_model_comes_out_as_its_notes(tmp_path, capsys):
  """C4 E4 G4 C5, struck and decaying: the shipped model spells each as several events, and the
  MIDI file reads each run back as the note that was played."""
  from sparse_jax import api
  from sparse_jax.__main__ import main
  from sparse_jax.codec import edit
  t = np.arange(3 * SR) / SR
  audio = np.zeros_like(t)
  played = [(60, 0.0), (64, 0.75), (67, 1.5), (72, 2.25)]
  for midi, t0 in played:
    on = (t >= t0) & (t < t0 + 0.7)
    hz = 440.0 * 2 ** ((midi - 69) / 12)
    audio[on] += 0.3 * np.sin(2 * np.pi * hz * (t[on] - t0)) * np.exp(-3 * (t[on] - t0))
  codec = api.load_codec()
  events = api.encode(codec, audio.astype(np.float32), SR)
  sjx_path, mid_path = tmp_path / "m.sjx", tmp_path / "m.mid"
  api.write(sjx_path, events)
  assert main(["midi", str(sjx_path), str(mid_path)]) == 0
  assert "notes and" in capsys.readouterr().out
  found = []
  now = 0
  midi_file = mido.MidiFile(str(mid_path))
  for message in midi_file.tracks[0]:
    now += message.time
    if message.type == "note_on" and message.channel != notes.DRUM_CHANNEL:
      found.append((message.note, now / (midi_file.ticks_per_beat * notes.MIDI_BPM / 60)))
  for midi, t0 in played:  # each played note has a written note at its pitch near its onset
    assert any(n == midi and abs(t - t0) < 0.1 for n, t in found), (midi, t0, found)
  # Solo events add up to the whole: the events of any split, decoded apart, sum to the decode.
  first = np.arange(len(events)) % 2 == 0
  parts = [codec.decode(edit.keep(events, mask)) for mask in (first, ~first)]
  np.testing.assert_allclose(parts[0] + parts[1], codec.decode(events), atol=1e-5)
