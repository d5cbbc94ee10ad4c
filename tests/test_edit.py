"""Tests for the event edits and the hand-editable JSON table."""
import json

import numpy as np
import pytest

from sparse_jax.codec import edit, sjx
from sparse_jax.codec import events as events_lib
from sparse_jax.errors import UserError

SR, HOP = 22050, 256
MODEL = bytes(range(16))


def make_events(seed=0, n_events=40, dim=8, seconds=10):
  rng = np.random.default_rng(seed)
  n_audio = SR * seconds
  return events_lib.EventSet(
      frames=rng.integers(0, n_audio // HOP, n_events), offsets=rng.uniform(-HOP, HOP, n_events),
      gains=rng.uniform(0, 2, n_events), vectors=rng.normal(size=(n_events, dim)) * 2,
      sample_rate=SR, hop=HOP, n_audio_samples=n_audio, model_id=MODEL, events_per_window=32)


def assert_unchanged(a, b):
  assert a.same_as(b)


# ----------------------------------------------------------------------------------------------
# The paper's experiments.


def test_random_vectors_in_file_range_at_original_times():
  ev = make_events(n_events=200)
  before = ev.replace()
  out = edit.random_vectors(ev, np.random.default_rng(1))
  assert_unchanged(ev, before)
  lo, hi = ev.vectors.min(), ev.vectors.max()
  assert out.vectors.shape == ev.vectors.shape
  assert out.vectors.min() >= lo and out.vectors.max() <= hi
  # Uniform over [lo, hi]: the draws fill the range, with the mean in the middle.
  assert out.vectors.min() < lo + 0.01 * (hi - lo) and out.vectors.max() > hi - 0.01 * (hi - lo)
  assert abs(out.vectors.mean() - (lo + hi) / 2) < 0.02 * (hi - lo)
  np.testing.assert_array_equal(out.frames, ev.frames)
  np.testing.assert_array_equal(out.offsets, ev.offsets)
  np.testing.assert_array_equal(out.gains, ev.gains)
  assert not np.allclose(out.vectors, ev.vectors)
  # Reproducible from the seed.
  assert edit.random_vectors(ev, np.random.default_rng(1)).same_as(out)


def test_random_times_uniform_over_the_file():
  ev = make_events(n_events=2000)
  out = edit.random_times(ev, np.random.default_rng(2))
  n_frames = ev.n_audio_samples // HOP
  assert out.frames.min() >= 0 and out.frames.max() < n_frames
  assert out.frames.min() < 0.01 * n_frames and out.frames.max() > 0.99 * n_frames
  assert abs(out.frames.mean() - (n_frames - 1) / 2) < 0.03 * n_frames
  np.testing.assert_array_equal(out.offsets, 0)
  np.testing.assert_array_equal(out.vectors, ev.vectors)
  np.testing.assert_array_equal(out.gains, ev.gains)


@pytest.mark.parametrize("scale", [0.0, 0.5, 7.0])
def test_perturb_moves_every_vector_by_one_shared_step(scale):
  ev = make_events()
  out = edit.perturb(ev, scale, np.random.default_rng(3))
  diff = out.vectors.astype(np.float64) - ev.vectors
  # Every row moved by the same vector (up to float32 rounding of the results) ...
  np.testing.assert_allclose(diff, np.broadcast_to(diff[0], diff.shape), atol=2e-6)
  # ... whose length is `scale`.
  np.testing.assert_allclose(np.linalg.norm(diff, axis=1), scale, atol=1e-5)
  np.testing.assert_array_equal(out.frames, ev.frames)
  np.testing.assert_array_equal(out.gains, ev.gains)
  if scale:
    other = edit.perturb(ev, scale, np.random.default_rng(4)).vectors - ev.vectors
    assert not np.allclose(other[0], diff[0], atol=1e-3)  # A different seed: another direction.
  with pytest.raises(ValueError):
    edit.perturb(ev, -1.0, np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------
# Composer edits.


def test_drop_by_indices_and_time_range():
  ev = make_events()
  out = edit.drop(ev, indices=[0, 5, -1])
  np.testing.assert_array_equal(out.gains, np.delete(ev.gains, [0, 5, len(ev) - 1]))
  t0, t1 = 2.0, 5.0
  out = edit.drop(ev, time_range=(t0, t1))
  times = ev.times_seconds
  expected = [i for i in range(len(ev)) if not t0 <= times[i] < t1]
  assert 0 < len(expected) < len(ev)
  np.testing.assert_array_equal(out.frames, ev.frames[expected])
  np.testing.assert_array_equal(out.vectors, ev.vectors[expected])
  # Both: the union.
  out = edit.drop(ev, indices=[expected[0]], time_range=(t0, t1))
  np.testing.assert_array_equal(out.gains, ev.gains[expected[1:]])
  # The interval is half-open: an event exactly at t1 stays, one exactly at t0 goes.
  edge = events_lib.EventSet(frames=[10, 20], offsets=[0, 0], gains=[1, 1], vectors=np.ones((2, 1)),
                             sample_rate=SR, n_audio_samples=SR, model_id=MODEL)
  t_a, t_b = edge.times_seconds
  np.testing.assert_array_equal(edit.drop(edge, time_range=(t_a, t_b)).frames, [20])
  with pytest.raises(ValueError):
    edit.drop(ev)


def test_shift_by_whole_frames_is_exact():
  ev = make_events()
  out = edit.shift_times(ev, 3 * HOP / SR)
  keep = ev.frames + 3 <= ev.max_frame
  np.testing.assert_array_equal(out.frames, ev.frames[keep] + 3)
  np.testing.assert_array_equal(out.offsets, ev.offsets[keep])
  np.testing.assert_array_equal(out.vectors, ev.vectors[keep])


def test_shift_by_fraction_moves_start_times_and_drops_outside():
  ev = make_events(n_events=200)
  seconds = -1.234567
  out = edit.shift_times(ev, seconds)
  new_start = ev.start_samples + seconds * SR
  # Dropped, never clamped to 0: a kept event has frame >= 0 (so starts at >= -hop), a dropped one
  # had frame < 0 (so starts at <= 0).
  assert 0 < len(out) < len(ev)
  by_vector = {tuple(v): i for i, v in enumerate(ev.vectors)}
  src = np.array([by_vector[tuple(v)] for v in out.vectors])
  dropped = np.setdiff1d(np.arange(len(ev)), src)
  assert np.all(new_start[src] >= -HOP) and np.all(new_start[dropped] <= 0)
  assert np.all(np.diff(src) > 0)  # Original order kept.
  # Each kept event starts exactly `seconds` later (float32 offset precision).
  np.testing.assert_allclose(out.start_samples, new_start[src], atol=1e-3)
  assert np.all(np.abs(out.offsets) <= HOP) and np.all(out.frames >= 0)
  # Shifting past the end drops events too.
  late = edit.shift_times(ev, ev.duration_seconds)
  assert len(late) == 0


@pytest.mark.parametrize("seconds", [1e17, 1e18, -1e18, 1e300, -1e300, 1e308])
def test_shift_far_beyond_the_file_drops_every_event_without_overflow(seconds):
  # `--shift 1e300` (and 1e17) raised OverflowError from the int64 frame arithmetic.
  out = edit.shift_times(make_events(), seconds)
  assert len(out) == 0 and out.n_audio_samples == SR * 10


@pytest.mark.filterwarnings("error")  # `--perturb 1e300` printed numpy's cast-overflow warning
@pytest.mark.parametrize("apply", [
    lambda ev: edit.perturb(ev, 1e300, np.random.default_rng(0)),
    lambda ev: edit.perturb(ev, 1e39, np.random.default_rng(0)),
    lambda ev: edit.scale_gains(ev, 1e300),
    lambda ev: edit.scale_gains(ev, 1e39),
])
def test_edits_beyond_float32_raise_one_error_and_no_warning(apply):
  with pytest.raises(ValueError, match="float32"):
    apply(make_events())


def test_shift_subset_only():
  ev = make_events()
  idx = [1, 2]
  out = edit.shift_times(ev, 0.5, indices=idx)
  others = np.setdiff1d(np.arange(len(ev)), idx)
  moved = ev.start_samples[idx] + 0.5 * SR
  in_file = np.round(moved / HOP) <= ev.max_frame
  assert len(out) == len(others) + int(in_file.sum())
  np.testing.assert_array_equal(out.select(np.isin(out.gains, ev.gains[others])).frames,
                                ev.frames[others])
  moved_out = out.select(np.isin(out.gains, ev.gains[idx]))
  np.testing.assert_allclose(moved_out.start_samples, moved[in_file], atol=1e-3)


def test_scale_gains():
  ev = make_events()
  out = edit.scale_gains(ev, 2.5, indices=[3, 4])
  expected = ev.gains.copy()
  expected[[3, 4]] = (ev.gains[[3, 4]].astype(np.float64) * 2.5).astype(np.float32)
  np.testing.assert_array_equal(out.gains, expected)
  np.testing.assert_array_equal(edit.scale_gains(ev, 0.0).gains, 0)
  np.testing.assert_array_equal(out.vectors, ev.vectors)
  with pytest.raises(ValueError):
    edit.scale_gains(ev, -1.0)


# ----------------------------------------------------------------------------------------------
# JSON.


def test_json_round_trip_is_exact():
  ev = make_events()
  # Include awkward float32 values: tiny, huge, negative zero, exact integers.
  vectors = ev.vectors.copy()
  vectors[0, :4] = [1e-30, -3.4e38, -0.0, 7.0]
  ev = ev.replace(vectors=vectors, gains=np.concatenate([[0.0, 1e-8, 1e4], ev.gains[3:]]))
  text = edit.to_json(ev)
  doc = json.loads(text)
  assert doc["metadata"]["model_id"] == MODEL.hex()
  assert doc["events"][7]["index"] == 7
  assert doc["events"][7]["frame"] == int(ev.frames[7])
  assert abs(doc["events"][7]["time_s"] - ev.times_seconds[7]) < 1e-6
  back = edit.from_json(text)
  assert back.same_as(ev)
  # One event a line: readable and diffable.
  assert len(text.splitlines()) == len(ev) + 17  # 17: the frame, metadata (one field a line)


def test_json_empty_and_via_sjx(tmp_path):
  ev = make_events().select([])
  assert edit.from_json(edit.to_json(ev)).same_as(ev)
  full = make_events()
  sjx.write(tmp_path / "a.sjx", edit.from_json(edit.to_json(full)))
  assert len(sjx.read(tmp_path / "a.sjx")) == len(full)


def test_json_hand_edits_of_time():
  ev = make_events(n_events=3)
  doc = json.loads(edit.to_json(ev))
  # Move event 1 by editing only time_s.
  del doc["events"][1]["frame"], doc["events"][1]["offset"]
  doc["events"][1]["time_s"] = 1.5
  back = edit.from_json(json.dumps(doc))
  assert back.times_seconds[1] == pytest.approx(1.5, abs=1e-6)
  assert abs(back.offsets[1]) <= HOP / 2
  # Editing time_s but leaving a contradicting frame is refused, naming the row.
  doc = json.loads(edit.to_json(ev))
  doc["events"][2]["time_s"] += 1.0
  with pytest.raises(UserError, match=r"events\[2\].*disagrees"):
    edit.from_json(json.dumps(doc))


@pytest.mark.parametrize("row_change, message", [
    (lambda r: r.pop("gain"), r'events\[2\] \(row 2\): missing "gain"'),
    (lambda r: r.update(gain=-1), r"events\[2\].*gain must be >= 0"),
    (lambda r: r.update(gain="loud"), r"events\[2\].*gain must be a finite number"),
    (lambda r: r.update(gain=True), r"events\[2\].*gain must be a finite number"),
    (lambda r: r.update(vector=[1.0, 2.0]), r"events\[2\].*list of 8 numbers"),
    (lambda r: r["vector"].__setitem__(3, None), r"events\[2\].*vector\[3\]"),
    (lambda r: r.update(frame=1.5), r"events\[2\].*frame must be an integer"),
    (lambda r: r.update(frame=10**9), r"events\[2\].*outside the audio"),
    (lambda r: r.update(offset=300.0), r"events\[2\].*outside \[-hop, hop\]"),
    (lambda r: [r.pop("frame"), r.pop("time_s")], r"events\[2\].*needs"),
])
def test_json_bad_row_names_the_row(row_change, message):
  doc = json.loads(edit.to_json(make_events(n_events=4)))
  row_change(doc["events"][2])
  with pytest.raises(UserError, match=message):
    edit.from_json(json.dumps(doc), source="song.json")


def test_json_bad_document():
  text = edit.to_json(make_events(n_events=2))
  with pytest.raises(UserError, match=r"song.json: not valid JSON: .* line 3"):
    edit.from_json(text.replace('"version": 1,', '"version": 1,,'), source="song.json")
  doc = json.loads(text)
  doc["metadata"]["model_id"] = "xyz"
  with pytest.raises(UserError, match="model_id must be 32 hex"):
    edit.from_json(json.dumps(doc))
  doc = json.loads(text)
  del doc["metadata"]["hop"]
  with pytest.raises(UserError, match='missing "hop"'):
    edit.from_json(json.dumps(doc))
  with pytest.raises(UserError, match="not an event table"):
    edit.from_json("[1, 2]")
