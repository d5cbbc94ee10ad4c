"""Tests for the codec command line (sparse_jax/codec/cli.py), run in-process through `cli.main`."""
import argparse
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

import codec_fixtures
from sparse_jax import audio_io
from sparse_jax.codec import cli, edit, sjx


@pytest.fixture(scope="module")
def workdir():
  return codec_fixtures.tiny_workdir()


@pytest.fixture(scope="module")
def codec(workdir):
  return cli.load_codec(workdir)


def run(capsys, *argv):
  code = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def write_clicks(path, seconds=1.5, sample_rate=44100, channels=2):
  """A stereo click train at 44.1 kHz (the codec resamples to 22050 and downmixes)."""
  n = int(seconds * sample_rate)
  audio = np.zeros((n, channels), np.float32)
  audio[::3000] = 0.8
  sf.write(path, audio, sample_rate)
  return path


@pytest.fixture(scope="module")
def encoded(workdir, tmp_path_factory):
  """An encoded stereo 44.1 kHz click train: (wav path, sjx path, encode stdout)."""
  folder = tmp_path_factory.mktemp("cli")
  wav = write_clicks(str(folder / "clicks.wav"))
  out = str(folder / "clicks.sjx")
  code = cli.main(["encode", wav, out, "--workdir", workdir, "--quiet"])
  assert code == 0
  return wav, out


def test_encode_prints_summary_and_decode_keeps_duration(capsys, workdir, codec, encoded,
                                                         tmp_path):
  wav, sjx_path = encoded
  code, out, err = run(capsys, "encode", wav, tmp_path / "again.sjx", "--workdir", workdir)
  assert code == 0, err
  assert "events" in out and "kbit/s" in out and "real-time factor" in out
  assert "residual energy left per window" in out and "over 5 windows" in out
  assert "encoding [" in err  # the progress bar (5 windows)
  # Same input, same model: the same file.
  assert open(sjx_path, "rb").read() == open(tmp_path / "again.sjx", "rb").read()

  audio = audio_io.load_audio(wav, codec.sample_rate)
  events = sjx.read(sjx_path, expected_model_id=codec.model_id)
  assert events.n_audio_samples == audio.size == 33075
  code, out, err = run(capsys, "decode", sjx_path, tmp_path / "out.wav", "--workdir", workdir,
                       "--float")
  assert code == 0, err
  decoded, rate = sf.read(tmp_path / "out.wav", dtype="float32")
  assert rate == codec.sample_rate and decoded.shape == audio.shape
  np.testing.assert_allclose(decoded, codec.decode(events), rtol=1e-6, atol=1e-7)


def test_info_json_and_text(capsys, encoded):
  _, sjx_path = encoded
  code, out, _ = run(capsys, "info", sjx_path, "--json")
  assert code == 0
  info = json.loads(out)
  events = sjx.read(sjx_path)
  assert info["events"] == len(events) and info["bits"] == 8
  assert info["duration_s"] == pytest.approx(33075 / 22050, abs=1e-4)
  assert info["model_id"] == events.model_id.hex()
  assert info["bitrate_kbps"] == pytest.approx(
      8 * os.path.getsize(sjx_path) / (33075 / 22050) / 1000, abs=1e-3)
  assert info["windows"] == 5 and sum(info["events_per_window"]) == len(events)
  code, out, _ = run(capsys, "info", sjx_path)
  assert code == 0
  lines = out.splitlines()
  assert any(line.startswith("model_id") and events.model_id.hex() in line for line in lines)
  # Aligned: every value starts in the same column.
  columns = {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in lines}
  assert len(columns) == 1


def test_encode_bits_and_threshold(capsys, workdir, encoded, tmp_path):
  wav, sjx_path = encoded
  out16 = tmp_path / "t.sjx"
  code, _, err = run(capsys, "encode", wav, out16, "--workdir", workdir, "--bits", "16",
                     "--residual-threshold", "0.999", "--quiet")
  assert code == 0, err
  info = cli.info_dict(str(out16))
  assert info["bits"] == 16
  # With a threshold no window keeps more than its setting; typically fewer events in total.
  assert max(info["events_per_window"]) <= info["events_per_window_setting"]
  assert info["events"] <= len(sjx.read(sjx_path))


def test_edit_commands(capsys, encoded, tmp_path):
  _, sjx_path = encoded
  events = sjx.read(sjx_path)
  out = tmp_path / "e.sjx"
  code, _, err = run(capsys, "edit", sjx_path, out, "--drop", "0,2", "--scale-gains", "0.5",
                     "--export-json", tmp_path / "e.json")
  assert code == 0, err
  edited = sjx.read(out)
  keep = np.ones(len(events), bool)
  keep[[0, 2]] = False
  np.testing.assert_array_equal(edited.frames, events.frames[keep])
  np.testing.assert_allclose(edited.gains, events.gains[keep] * 0.5, rtol=1e-3)
  table = edit.from_json(open(tmp_path / "e.json").read())
  assert len(table) == len(edited)

  # Hand edit: silence one event, then import.
  doc = json.loads(open(tmp_path / "e.json").read())
  doc["events"][1]["gain"] = 0.0
  (tmp_path / "h.json").write_text(json.dumps(doc))
  code, _, err = run(capsys, "edit", out, tmp_path / "h.sjx", "--import-json", tmp_path / "h.json")
  assert code == 0, err
  assert sjx.read(tmp_path / "h.sjx").gains[1] == 0

  code, _, err = run(capsys, "edit", sjx_path, tmp_path / "r.sjx", "--random-vectors",
                     "--random-times", "--perturb", "0.1", "--seed", "3", "--bits", "16")
  assert code == 0, err
  r = sjx.read(tmp_path / "r.sjx")
  assert len(r) == len(events) and cli.info_dict(str(tmp_path / "r.sjx"))["bits"] == 16
  assert not np.allclose(np.sort(r.vectors, 0), np.sort(events.vectors, 0))

  shift = 2 * events.hop / events.sample_rate
  code, _, err = run(capsys, "edit", sjx_path, tmp_path / "s.sjx", "--shift", shift,
                     "--drop-range", "0:0.5")
  assert code == 0, err
  s = sjx.read(tmp_path / "s.sjx")
  late = events.times_seconds >= 0.5
  kept = np.sort(events.frames[late] + 2)
  np.testing.assert_array_equal(s.frames, kept[kept <= events.max_frame])


# ------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit 2, no output file.


def _corrupt(src, dst):
  data = bytearray(open(src, "rb").read())
  data[60] ^= 0xFF
  open(dst, "wb").write(bytes(data))


def _truncate(src, dst):
  open(dst, "wb").write(open(src, "rb").read()[:-7])


def _foreign(src, dst):
  sjx.write(dst, sjx.read(src).replace(model_id=b"\x01" * 16))


@pytest.mark.parametrize("make,match", [
    (_corrupt, "corrupt"), (_truncate, "truncated"), (_foreign, "model")])
def test_bad_sjx_files_give_one_line(capsys, workdir, encoded, tmp_path, make, match):
  _, sjx_path = encoded
  bad = str(tmp_path / "bad.sjx")
  make(sjx_path, bad)
  out = tmp_path / "out.wav"
  code, _, err = run(capsys, "decode", bad, out, "--workdir", workdir)
  assert code == 2
  assert len(err.splitlines()) == 1 and err.startswith("error:") and match in err
  assert not out.exists()
  if make is not _foreign:
    for argv in (("info", bad), ("edit", bad, tmp_path / "e.sjx")):
      code, _, err = run(capsys, *argv)
      assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error:")
    assert not (tmp_path / "e.sjx").exists()
  assert os.listdir(tmp_path) == ["bad.sjx"]  # no temporary files left either


def test_foreign_file_decodes_when_told(capsys, workdir, encoded, tmp_path):
  _, sjx_path = encoded
  _foreign(sjx_path, tmp_path / "f.sjx")
  code, _, err = run(capsys, "decode", tmp_path / "f.sjx", tmp_path / "f.wav", "--workdir",
                     workdir, "--ignore-model-id")
  assert code == 0, err and (tmp_path / "f.wav").exists()


def _broken_workdirs(root, good):
  no_ckpt = os.path.join(root, "no_ckpt")
  os.makedirs(no_ckpt)
  shutil.copy(os.path.join(good, "config.json"), no_ckpt)
  damaged = os.path.join(root, "damaged")
  shutil.copytree(good, damaged)
  for folder, _, files in os.walk(os.path.join(damaged, "checkpoints")):
    for name in files:
      with open(os.path.join(folder, name), "wb") as f:
        f.write(b"garbage")
  bad_config = os.path.join(root, "bad_config")
  shutil.copytree(good, bad_config)
  with open(os.path.join(bad_config, "config.json"), "w") as f:
    f.write("{not json")
  return {"missing": os.path.join(root, "nope"), "no_ckpt": no_ckpt, "damaged": damaged,
          "bad_config": bad_config}


def test_missing_or_broken_checkpoints_give_one_line(capfd, workdir, encoded, tmp_path):
  # capfd: what reaches file descriptor 2, including library log handlers (Orbax logs via absl).
  wav, sjx_path = encoded
  broken = _broken_workdirs(str(tmp_path / "w"), workdir)
  for name, wd in broken.items():
    for argv in (("encode", wav, tmp_path / "o.sjx", "--workdir", wd),
                 ("decode", sjx_path, tmp_path / "o.wav", "--workdir", wd)):
      code, _, err = run(capfd, *argv)
      assert code == 2, (name, err)
      assert len(err.splitlines()) == 1 and err.startswith("error:"), (name, err)
  assert not (tmp_path / "o.sjx").exists() and not (tmp_path / "o.wav").exists()


def test_bad_audio_and_paths_give_one_line(capsys, workdir, encoded, tmp_path):
  wav, sjx_path = encoded
  text = tmp_path / "notes.wav"
  text.write_text("this is not audio")
  empty = tmp_path / "empty.wav"
  sf.write(empty, np.zeros((0, 1), np.float32), 22050)
  cases = [
      ("encode", text, tmp_path / "o.sjx", "--workdir", workdir),
      ("encode", empty, tmp_path / "o.sjx", "--workdir", workdir),
      ("encode", tmp_path / "missing.flac", tmp_path / "o.sjx", "--workdir", workdir),
      ("encode", wav, tmp_path / "no" / "o.sjx", "--workdir", workdir),
      ("decode", sjx_path, tmp_path / "o.mp3", "--workdir", workdir),
      ("decode", tmp_path / "missing.sjx", tmp_path / "o.wav", "--workdir", workdir),
      ("edit", sjx_path, tmp_path / "o.sjx", "--drop", "x,1"),
      ("edit", sjx_path, tmp_path / "o.sjx", "--drop", "100000"),
      ("edit", sjx_path, tmp_path / "o.sjx", "--drop-range", "3:1"),
      ("edit", sjx_path, tmp_path / "o.sjx", "--perturb", "-1"),
      ("edit", sjx_path, tmp_path / "o.sjx", "--import-json", text),
      ("report", text, "--workdir", workdir, "--out", tmp_path / "rep"),
  ]
  for argv in cases:
    code, _, err = run(capsys, *argv)
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and err.startswith("error:"), (argv, err)
  assert sorted(os.listdir(tmp_path)) == ["empty.wav", "notes.wav"]


def test_register_adds_the_commands():
  parser = argparse.ArgumentParser()
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("info")  # __main__'s own `info`: the codec's can take another name
  cli.register(sub, info_name="sjx-info")
  for argv, fn in ((["encode", "a.wav", "b.sjx", "--workdir", "w"], cli.cmd_encode),
                   (["decode", "b.sjx", "c.wav", "--workdir", "w"], cli.cmd_decode),
                   (["edit", "b.sjx", "d.sjx", "--random-times"], cli.cmd_edit),
                   (["sjx-info", "b.sjx"], cli.cmd_info),
                   (["report", "a.wav", "--workdir", "w", "--out", "r"], cli.cmd_report)):
    assert parser.parse_args(argv).fn is fn
