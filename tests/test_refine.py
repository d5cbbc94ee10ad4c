"""Tests for encode-time refinement (sparse_jax/codec/refine.py, `encode --refine N`).

On the untrained ':tiny' model (2^14-sample windows, hop 64) of codec_fixtures: refinement never
decodes worse than the plain encode (per window in the same context, and for the whole file at
every checked resolution), it lowers its loss on a known signal, the refined file is an ordinary
`.sjx` file with one flag bit set, `info` reports it, and bad `--refine` values give one line.
"""
import json
import struct
import zlib

import codec_fixtures
import numpy as np
import pytest
import synthetic
from test_stream import click_train, own_events, short_chord

from sparse_jax import api, metrics
from sparse_jax.cli import commands as cli
from sparse_jax.codec import refine, sjx
from sparse_jax.errors import UserError

# Part of `make test` (CI), not of `make test-fast`: runs encode-time refinement (Adam over windows).
pytestmark = pytest.mark.slow

STEPS = 6


@pytest.fixture(scope="module")
def codec():
  return codec_fixtures.tiny_codec()


def decoded_error(codec, audio, events, window, hop):
  """Spectral L1 error of the file's decode (through 8-bit `.sjx` bytes) at one STFT."""
  restored = sjx.decode_bytes(sjx.encode_bytes(events, 8), expected_model_id=codec.model_id)
  decoded = codec.decode(restored)
  return float(np.abs(metrics.stft_magnitude(audio, window, hop) -
                      metrics.stft_magnitude(decoded, window, hop)).sum())


def refined_encode(codec, audio):
  """The plain encode, then STEPS of refinement: what `api.encode(..., refine=STEPS)` runs."""
  events, info = codec.encode(audio, return_info=True)
  return refine.refine(codec, audio, events, info, STEPS, bits=8)


@pytest.fixture(scope="module")
def known(codec):
  """A signal made of the model's own events (something it can explain), plain and refined."""
  audio = own_events(codec, 2 * codec.n_samples + 1000, every=17, seed=3)
  plain = codec.encode(audio, return_info=True)
  refined = refined_encode(codec, audio)
  return audio, plain, refined


def test_refinement_never_decodes_worse_than_the_plain_encode(codec, known):
  """White noise, a click train, a short chord, plucked notes and the model's own events:
  the refined file decodes with no more spectral L1 error than the plain file at both checked
  resolutions; every window's step is <= 0 (explained >= 0), and no window is worse than its
  plain events in the same context."""
  rng = np.random.default_rng(7)
  n = codec.n_samples + codec.n_samples // 2
  inputs = {"white noise": (0.1 * rng.standard_normal(n)).astype(np.float32),
            "click train": click_train(n, every=700), "short chord": short_chord(codec),
            "plucked notes": synthetic.note_sequence(n, codec.sample_rate, seed=2)}
  runs = {name: (audio, codec.encode(audio, return_info=True),
                 refined_encode(codec, audio))
          for name, audio in inputs.items()}
  runs["own events"] = known
  for name, (audio, (plain, _), (refined, info)) in runs.items():
    r = info.refine
    assert refined.refined and not plain.refined
    assert r.steps == STEPS and r.resolutions == info.resolutions
    assert np.all(info.decoded_l1_after_WxV <= info.decoded_l1_before_WxV), name
    # The window-level guarantee: refined events are kept only where they are no worse.
    assert np.all(info.decoded_l1_after_WxV <= r.plain_after_WxV), name
    for i, (window, hop) in enumerate(info.resolutions):
      silence = float(metrics.stft_magnitude(audio, window, hop).sum())
      before = decoded_error(codec, audio, plain, window, hop)
      after = decoded_error(codec, audio, refined, window, hop)
      assert after <= silence, (name, window)
      assert after <= before * (1 + 1e-5) + 1e-9, (name, window, after, before)
      assert r.error_V[i] <= r.plain_error_V[i]
      assert after == pytest.approx(r.error_V[i], rel=1e-4, abs=1e-6), (name, window)
  # Not vacuous: on the model's own events some windows took their refined events and the
  # file's error fell.
  _, _, (_, info) = runs["own events"]
  assert info.refine.refined_W.any() and not info.refine.fell_back
  assert np.all(info.refine.error_V < info.refine.plain_error_V)


def test_refinement_lowers_its_loss_on_a_known_signal(codec, known):
  """Each refined window ends at its best iterate, never above where it started (the plain
  events), and on the model's own events the multi-resolution loss falls."""
  _, _, (_, info) = known
  r = info.refine
  live = np.isfinite(r.loss_start_W)
  assert live.sum() >= 2
  assert np.all(r.loss_end_W[live] <= r.loss_start_W[live])
  assert np.mean(r.loss_end_W[live]) < 0.97 * np.mean(r.loss_start_W[live])


def test_refine_zero_is_the_plain_encode(codec):
  audio = short_chord(codec, seconds=0.5)
  plain = codec.encode(audio)
  again, info = api.encode(codec, audio, refine=0, return_info=True)
  unstored = dict(level=0.0, source_sample_rate=0, source_channels=0)  # what api.encode adds
  assert plain.same_as(again.replace(**unstored)) and info.refine is None and not again.refined


def test_refined_file_is_an_ordinary_sjx_file(codec, known):
  """The flag is bit 15 of events_per_window: the events, and every other header field, are
  what they would be unflagged, so a reader that predates the flag decodes the file exactly (it
  checks that field only for 0), and a file written before it reads as unrefined."""
  _, _, (events, _) = known
  data = sjx.encode_bytes(events, 8)
  (field,) = struct.unpack_from("<H", data, 26)
  assert field == events.events_per_window | sjx.REFINED_FLAG and field <= 0xFFFF
  back = sjx.decode_bytes(data, expected_model_id=codec.model_id)
  assert back.refined and back.events_per_window == events.events_per_window
  # What an old reader sees: the same bytes with the bit clear (and the CRC redone) hold the same
  # events and metadata; only the flag differs.
  old = bytearray(data[:-4])
  struct.pack_into("<H", old, 26, field & 0x7FFF)
  old = bytes(old) + struct.pack("<I", zlib.crc32(bytes(old)))
  unflagged = sjx.decode_bytes(old)
  assert not unflagged.refined
  assert unflagged.same_as(back.replace(refined=False))
  np.testing.assert_array_equal(codec.decode(unflagged), codec.decode(back))
  # The count stays below the flag.
  with pytest.raises(UserError, match="events per window"):
    codec.encode(np.zeros(10, np.float32), n_events=2**15)


def test_info_reports_refined(capsys, tmp_path):
  workdir = codec_fixtures.tiny_workdir()
  codec = codec_fixtures.tiny_codec()
  wav = tmp_path / "in.wav"
  from sparse_jax import audio_io
  audio_io.write_audio(str(wav), short_chord(codec, seconds=0.6), codec.sample_rate)
  for steps, expected in ((None, False), ("3", True)):
    out = tmp_path / f"out_{steps}.sjx"
    argv = ["encode", str(wav), str(out), "--workdir", workdir, "--quiet"]
    assert cli.main(argv + (["--refine", steps] if steps else [])) == 0
    printed = capsys.readouterr().out
    assert ("refined: 3 steps per window" in printed) == expected
    assert cli.main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["refined"] is expected
    assert cli.main(["info", str(out)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("refined ")]
    assert line and line[0].split()[-1] == str(expected)


@pytest.mark.parametrize("value", ["-1", "2.5", "abc", "", str(refine.MAX_STEPS + 1)])
def test_bad_refine_values_give_one_line(capsys, tmp_path, value):
  """Checked before the model is loaded (the workdir does not even exist)."""
  wav = tmp_path / "in.wav"
  wav.write_bytes(b"")
  for argv in (["encode", str(wav), str(tmp_path / "o.sjx")],
               ["report", str(wav), "--out", str(tmp_path / "report")]):
    assert cli.main(argv + ["--workdir", str(tmp_path / "none"), f"--refine={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --refine"), err
  with pytest.raises(UserError, match="refine steps"):
    refine.check_steps(value)


def test_report_plays_the_refined_reconstruction_beside_the_plain_one(codec, tmp_path):
  from sparse_jax.report import assemble as report
  audio = short_chord(codec, seconds=0.6)
  index = report.write_report(audio, codec, str(tmp_path / "r"), refine=2)
  page = open(index).read()
  for name in ("reconstruction.mp3", "reconstruction_refined.mp3"):
    assert f'src="{name}"' in page and (tmp_path / "r" / name).stat().st_size > 0
  assert "Reconstruction, refined (--refine 2)" in page
  assert "spectral L1 explained (2048/256): plain / refined" in page
  plain = report.write_report(audio, codec, str(tmp_path / "p"))
  assert "reconstruction_refined" not in open(plain).read()
