"""Tests for the codec command line (sparse_jax/cli/commands.py), run in-process through `cli.main`."""
import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import codec_fixtures
import numpy as np
import pytest
import soundfile as sf

from sparse_jax import audio_io
from sparse_jax.cli import commands as cli
from sparse_jax.codec import edit, sjx
from sparse_jax.codec import events as sjx_events


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
  assert "encoding:" in err and "5/5" in err  # the progress bar (5 windows)
  # Same input, same model: the same file.
  assert open(sjx_path, "rb").read() == open(tmp_path / "again.sjx", "rb").read()

  audio = audio_io.load_audio(wav, codec.sample_rate)
  events = sjx.read(sjx_path, expected_model_id=codec.model_id)
  assert events.n_audio_samples == audio.size == 33075
  code, out, err = run(capsys, "decode", sjx_path, tmp_path / "out.wav", "--workdir", workdir,
                       "--float", "--model-format")
  assert code == 0, err
  decoded, rate = sf.read(tmp_path / "out.wav", dtype="float32")
  assert rate == codec.sample_rate and decoded.shape == audio.shape
  np.testing.assert_allclose(decoded, codec.decode(events), rtol=1e-6, atol=1e-7)
  # By default: the recording's rate and channels (44.1 kHz stereo), at its stored level.
  code, out, err = run(capsys, "decode", sjx_path, tmp_path / "in_format.wav", "--workdir",
                       workdir, "--float")
  assert code == 0, err
  decoded, rate = sf.read(tmp_path / "in_format.wav", dtype="float32", always_2d=True)
  assert rate == 44100 and decoded.shape == sf.read(wav, always_2d=True)[0].shape
  # (The untrained model removes nothing from clicks: no level is stored, none is applied.)
  expected = audio_io.to_format(codec.decode(events) * np.float32(events.level or 1), 22050,
                                44100, 2)
  np.testing.assert_allclose(decoded, expected, rtol=1e-5, atol=1e-6)


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
  # The encoder keeps only events that lower the decoded error, which on clicks is one or two for
  # the untrained model: the edits get a file of 12 events spread over the clip, same model.
  encoded_events = sjx.read(encoded[1])
  rng = np.random.default_rng(0)
  frames = np.linspace(0, encoded_events.max_frame, 12).astype(np.int64)
  events = encoded_events.replace(
      frames=frames, offsets=rng.uniform(-10, 10, 12).astype(np.float32),
      gains=rng.uniform(0.1, 2.0, 12).astype(np.float32),
      vectors=rng.normal(size=(12, encoded_events.event_dim)).astype(np.float32))
  sjx_path = tmp_path / "twelve.sjx"
  sjx.write(sjx_path, events)
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

  # A model with no pitch control cannot transpose: one line, and no file.
  code, _, err = run(capsys, "edit", sjx_path, tmp_path / "t.sjx", "--transpose", "2",
                     "--model", codec_fixtures.tiny_workdir())
  assert code != 0 and "no pitch control" in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "t.sjx").exists()


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


# ------------------------------------------------------------------------------------------------
# Hostile headers, edit values, existing outputs (issue 8, section 3).  None of these needs the
# model: each must fail before it is loaded, so a bogus --workdir proves the order too.

BOGUS_WORKDIR = "/nonexistent/workdir"


def synthetic_sjx(path, *fields, n_events=4, n_audio=33075):
  """A valid .sjx of `n_events` events (the tiny model's rate, hop and window), then header
  `fields` (offset, struct format, value) patched and the CRC32 trailer recomputed."""
  rng = np.random.default_rng(0)
  ev = sjx_events.EventSet(
      frames=np.arange(n_events) * 100, offsets=np.zeros(n_events), gains=np.ones(n_events),
      vectors=rng.normal(size=(n_events, 8)), sample_rate=22050, hop=64, window_samples=2**14,
      n_audio_samples=n_audio, model_id=b"\x07" * 16, events_per_window=32)
  data = bytearray(sjx.encode_bytes(ev))
  for offset, fmt, value in fields:
    struct.pack_into(fmt, data, offset, value)
  data = bytes(data[:-4])
  with open(path, "wb") as f:
    f.write(data + struct.pack("<I", zlib.crc32(data)))
  return str(path)


@pytest.mark.parametrize("fields, n_events, message", [
    (((16, "<Q", 2**32),), 4, "n_audio_samples"),      # F4: decode ran 87 s, 17 GB, 8.6 GB wav
    (((16, "<Q", 2**40),), 4, "n_audio_samples"),      # F2: info used 5.4 GB
    (((16, "<Q", 2**63),), 4, "n_audio_samples"),      # F1: numpy traceback
    (((16, "<Q", 2**64 - 1),), 4, "n_audio_samples"),  # F3: numpy traceback
    (((10, "<H", 1), (12, "<I", 1)), 4, "window_samples"),  # F5: hop = window = 1
    (((16, "<Q", 2**31),), 4, "reaches past its events"),  # within the cap, but not the events
    (((16, "<Q", 2**20),), 0, "reaches past its events"),  # no events at all
])
def test_implausible_header_refused_in_one_line_before_the_model(capsys, tmp_path, fields,
                                                                 n_events, message):
  # Without events the file may only declare two windows (2^15 samples) to start with.
  bad = synthetic_sjx(tmp_path / "bomb.sjx", *fields, n_events=n_events,
                      n_audio=33075 if n_events else 2**15)
  out = tmp_path / "out.wav"
  for argv in (("info", bad), ("info", bad, "--json"),
               ("decode", bad, out, "--workdir", BOGUS_WORKDIR),
               ("edit", bad, tmp_path / "e.sjx")):
    code, stdout, err = run(capsys, *argv)
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, (argv, err)
    assert stdout == ""
  assert os.listdir(tmp_path) == ["bomb.sjx"]  # no output, no temporary file


@pytest.mark.filterwarnings("error")  # a numpy warning before the error line fails the test
@pytest.mark.parametrize("option, value", [
    ("--shift", "1e300"), ("--shift", "1e17"), ("--shift", "-1e17"), ("--shift", "nan"),
    ("--shift", "inf"), ("--shift", "3"),
    ("--seed", "-1"),
    ("--perturb", "1e300"), ("--perturb", "nan"), ("--perturb", "inf"),
    ("--scale-gains", "1e300"), ("--scale-gains", "nan"), ("--scale-gains", "inf"),
    ("--scale-gains", "-2"),
])
def test_bad_edit_values_give_one_line_naming_the_option(capsys, tmp_path, option, value):
  src = synthetic_sjx(tmp_path / "in.sjx")
  code, _, err = run(capsys, "edit", src, tmp_path / "out.sjx", f"{option}={value}")
  assert code == 2, err
  assert len(err.splitlines()) == 1 and err.startswith(f"error: {option} {float(value):g}:"), err
  assert os.listdir(tmp_path) == ["in.sjx"]


def test_perturb_overflow_prints_only_the_error_line(tmp_path):
  """F8, outside pytest's warning capture: stderr holds the error line and nothing else."""
  src = synthetic_sjx(tmp_path / "in.sjx")
  proc = subprocess.run([sys.executable, "-m", "sparse_jax", "edit", src, str(tmp_path / "o.sjx"),
                         "--perturb", "1e300"], capture_output=True, text=True, timeout=120,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 2, proc.stderr
  assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: --perturb")
  assert not (tmp_path / "o.sjx").exists()


def _existing_output_cases(tmp_path):
  wav = write_clicks(str(tmp_path / "in.wav"), seconds=0.1)
  src = synthetic_sjx(tmp_path / "in.sjx")
  old_sjx, old_wav, old_json = tmp_path / "old.sjx", tmp_path / "old.wav", tmp_path / "old.json"
  for path in (old_sjx, old_wav, old_json):
    path.write_bytes(b"old")
  report_dir = tmp_path / "rep"
  report_dir.mkdir()
  (report_dir / "index.html").write_text("old")
  return [
      (("encode", wav, old_sjx, "--workdir", BOGUS_WORKDIR), old_sjx),
      (("decode", src, old_wav, "--workdir", BOGUS_WORKDIR), old_wav),
      (("edit", src, old_sjx, "--random-times"), old_sjx),
      (("edit", src, tmp_path / "new.sjx", "--export-json", old_json), old_json),
      (("report", wav, "--workdir", BOGUS_WORKDIR, "--out", report_dir), report_dir),
  ]


def test_existing_output_is_refused_without_force_before_the_model(capsys, tmp_path):
  for argv, existing in _existing_output_cases(tmp_path):
    before = sorted(os.listdir(tmp_path))
    code, _, err = run(capsys, *argv)
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and f"{existing}: already exists" in err, (argv, err)
    assert "--force" in err, err
    assert sorted(os.listdir(tmp_path)) == before  # nothing new, not even the edit's main output
  assert (tmp_path / "old.sjx").read_bytes() == b"old"
  assert (tmp_path / "rep" / "index.html").read_text() == "old"


@pytest.mark.parametrize("flag", ["--force", "-f"])
def test_force_passes_the_output_check(capsys, tmp_path, flag):
  # With --force the output check passes and the next problem is the bogus workdir (or, for edit,
  # there is none: the file is replaced).
  for argv, _ in _existing_output_cases(tmp_path):
    code, _, err = run(capsys, *argv, flag)
    if argv[0] == "edit":
      assert code == 0, (argv, err)
    else:
      assert code == 2 and "already exists" not in err and BOGUS_WORKDIR in err, (argv, err)
  assert sjx.read(tmp_path / "old.sjx").n_audio_samples == 33075
  assert (tmp_path / "old.json").read_text().startswith("{")


def test_output_path_checked_before_the_model(capsys, tmp_path):
  wav = write_clicks(str(tmp_path / "in.wav"), seconds=0.1)
  src = synthetic_sjx(tmp_path / "in.sjx")
  (tmp_path / "folder.sjx").mkdir()
  (tmp_path / "folder.wav").mkdir()
  (tmp_path / "file").write_text("x")
  cases = [
      (("encode", wav, tmp_path / "no" / "o.sjx", "--workdir", BOGUS_WORKDIR), "does not exist"),
      (("encode", wav, tmp_path / "folder.sjx", "--workdir", BOGUS_WORKDIR), "is a folder"),
      (("encode", wav, tmp_path / "folder.sjx", "--workdir", BOGUS_WORKDIR, "-f"), "is a folder"),
      (("decode", src, tmp_path / "no" / "o.wav", "--workdir", BOGUS_WORKDIR), "does not exist"),
      (("decode", src, tmp_path / "folder.wav", "--workdir", BOGUS_WORKDIR), "is a folder"),
      (("edit", src, tmp_path / "no" / "o.sjx"), "does not exist"),
      (("edit", src, tmp_path / "o.sjx", "--export-json", tmp_path / "no" / "e.json"),
       "does not exist"),
      (("report", wav, "--workdir", BOGUS_WORKDIR, "--out", tmp_path / "no" / "rep"),
       "does not exist"),
      (("report", wav, "--workdir", BOGUS_WORKDIR, "--out", tmp_path / "file", "-f"), "is a file"),
      (("report", wav, "--workdir", BOGUS_WORKDIR, "--out", tmp_path / "r", "--seed", "-1"),
       "--seed"),
  ]
  for argv, message in cases:
    code, _, err = run(capsys, *argv)
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and message in err, (argv, err)
  assert sorted(os.listdir(tmp_path)) == ["file", "folder.sjx", "folder.wav", "in.sjx", "in.wav"]


def test_force_overwrites_real_outputs(capsys, workdir, encoded, tmp_path):
  wav, sjx_path = encoded
  out_sjx, out_wav = tmp_path / "o.sjx", tmp_path / "o.wav"
  out_sjx.write_bytes(b"old")
  out_wav.write_bytes(b"old")
  code, _, err = run(capsys, "encode", wav, out_sjx, "--workdir", workdir, "--quiet", "--force")
  assert code == 0, err
  assert out_sjx.read_bytes() == open(sjx_path, "rb").read()
  code, _, err = run(capsys, "decode", sjx_path, out_wav, "--workdir", workdir, "--quiet", "-f")
  assert code == 0, err
  assert sf.info(str(out_wav)).frames == 66150  # the input's 1.5 s at 44.1 kHz


# ------------------------------------------------------------------------------------------------
# The codec as people expect a codec (issue 12): --version, a bitrate target, round trips,
# the recording's format, clipping, standard input and output, folders.


def own_events_wav(codec, path, seconds=1.5, sample_rate=44100, channels=2):
  """A stereo 44.1 kHz file of the untrained model's own events: something it keeps events of."""
  from test_stream import own_events
  mono = own_events(codec, int(seconds * codec.sample_rate), every=7)
  audio = audio_io.resample(0.5 * mono / np.abs(mono).max(), codec.sample_rate, sample_rate)
  sf.write(path, np.repeat(audio[:, None], channels, 1), sample_rate, subtype="FLOAT")
  return str(path)


@pytest.fixture(scope="module")
def rich(codec, tmp_path_factory):
  return own_events_wav(codec, tmp_path_factory.mktemp("rich") / "rich.wav")


def test_version_and_the_console_command(capsys):
  import tomllib

  import sparse_jax
  from sparse_jax import __main__ as entry
  with pytest.raises(SystemExit) as exit_info:
    entry.main(["--version"])
  assert exit_info.value.code == 0
  assert capsys.readouterr().out.strip().endswith(sparse_jax.__version__)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  assert project["scripts"]["sparse-jax"] == "sparse_jax.__main__:main"
  # requirements.txt (what `make setup` installs) is the core plus every extra, no more.
  extras = project["optional-dependencies"]
  declared = set(project["dependencies"]) | {r for name, reqs in extras.items() if name != "all"
                                             for r in reqs}
  with open(os.path.join(root, "requirements.txt")) as f:
    wanted = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
  assert len(wanted) == len(set(wanted)) and set(wanted) == declared
  assert extras["all"] == [f"sparse-jax[{','.join(n for n in extras if n != 'all')}]"]


def test_kbps_chooses_the_events_per_window(capsys, workdir, codec, rich, tmp_path):
  n = audio_io.load_audio(rich, codec.sample_rate).size
  shape = dict(n_audio_samples=n, sample_rate=codec.sample_rate, hop=codec.hop,
               window_samples=codec.n_samples, event_dim=codec.event_dim, bits=8)
  target = sjx.kbps_bound(3, **shape) + 0.01  # room for exactly 3 events per window
  out = tmp_path / "k.sjx"
  code, stdout, err = run(capsys, "encode", rich, out, "--workdir", workdir, "--kbps", target,
                          "--quiet")
  assert code == 0, err
  info = cli.info_dict(str(out))
  assert info["events_per_window_setting"] == 3 and info["events"] > 0
  assert info["bitrate_kbps"] <= target and f"target {target:g}" in stdout
  # A target below one event per window, and --kbps with --events: one line each.
  for argv, message in (((*("--kbps", 0.01),), "lowest rate"),
                        ((*("--kbps", 3, "--events", 4),), "pass one of them"),
                        ((*("--kbps", -1),), "positive")):
    code, _, err = run(capsys, "encode", rich, tmp_path / "x.sjx", "--workdir", workdir, *argv)
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
  assert not (tmp_path / "x.sjx").exists()


def test_encode_at_onsets_places_events_at_the_recordings_onsets(capsys, workdir, codec, rich,
                                                                 tmp_path):
  from sparse_jax import audio_io
  from sparse_jax.codec import onsets
  out = tmp_path / "onsets.sjx"
  code, _, err = run(capsys, "encode", rich, out, "--workdir", workdir, "--at-onsets", "--quiet")
  assert code == 0, err
  audio, rate = audio_io.read_audio(rich)
  mono = audio_io.resample(audio_io.downmix(audio), rate, codec.sample_rate)
  detected = onsets.onset_frames(mono, codec.sample_rate, codec.hop)
  events = sjx.read(out)
  frames = events.frames[events.gains > 0]  # (a file fills long silences with silent events)
  radius = onsets.radius_frames(codec.sample_rate, codec.hop)
  assert frames.size and np.all(np.abs(frames[:, None] - detected[None, :]).min(axis=1) <= radius)


def test_round_trip_writes_audio_and_no_sjx_unless_asked(capsys, workdir, codec, rich, tmp_path):
  code, out, err = run(capsys, "encode", rich, tmp_path / "rt.wav", "--workdir", workdir,
                       "--quiet", "--float", "--model-format")
  assert code == 0, err
  assert sorted(os.listdir(tmp_path)) == ["rt.wav"]
  assert "kbit/s" in out and "decoded in" in out
  code, _, err = run(capsys, "encode", rich, tmp_path / "rt2.wav", "--workdir", workdir,
                     "--quiet", "--float", "--model-format", "--sjx", tmp_path / "rt2.sjx")
  assert code == 0, err
  decoded, rate = sf.read(tmp_path / "rt2.wav", dtype="float32")
  np.testing.assert_array_equal(decoded, sf.read(tmp_path / "rt.wav", dtype="float32")[0])
  np.testing.assert_allclose(decoded, codec.decode(sjx.read(tmp_path / "rt2.sjx")), atol=1e-7)
  # Round-trip options on an event output are a mistake, said before the model loads.
  code, _, err = run(capsys, "encode", rich, tmp_path / "e.sjx", "--workdir", BOGUS_WORKDIR,
                     "--rescale")
  assert code == 2 and "--rescale applies to a round trip" in err


def test_original_format_restores_rate_and_channels(capsys, workdir, codec, rich, tmp_path):
  src = tmp_path / "s.sjx"
  assert run(capsys, "encode", rich, src, "--workdir", workdir, "--quiet")[0] == 0
  events = sjx.read(src)
  assert (events.source_sample_rate, events.source_channels) == (44100, 2)
  info = cli.info_dict(str(src))
  assert info["source_sample_rate"] == 44100 and info["source_channels"] == 2
  code, out, err = run(capsys, "decode", src, tmp_path / "o.wav", "--workdir", workdir,
                       "--original-format", "--float")
  assert code == 0, err
  assert "44100 Hz, 2 channels" in out
  decoded, rate = sf.read(tmp_path / "o.wav", dtype="float32", always_2d=True)
  assert rate == 44100 and decoded.shape == (sf.info(rich).frames, 2)
  np.testing.assert_array_equal(decoded[:, 0], decoded[:, 1])
  code, _, err = run(capsys, "decode", src, tmp_path / "p.wav", "--workdir", workdir, "--float",
                     "--model-format")
  assert code == 0, err
  assert sf.info(str(tmp_path / "p.wav")).samplerate == 22050
  assert sf.info(str(tmp_path / "p.wav")).channels == 1
  # Without options, the same as --original-format (kept for old scripts).
  code, _, err = run(capsys, "decode", src, tmp_path / "d.wav", "--workdir", workdir, "--float")
  assert code == 0, err
  np.testing.assert_array_equal(sf.read(tmp_path / "d.wav")[0], sf.read(tmp_path / "o.wav")[0])
  # A file from before the format was stored (upper half of the length 0) decodes as it was.
  old = tmp_path / "old.sjx"
  sjx.write(old, events.replace(source_sample_rate=0, source_channels=0))
  data = open(old, "rb").read()
  assert data[20:24] == b"\0\0\0\0" and len(data) == os.path.getsize(src)
  code, out, err = run(capsys, "decode", old, tmp_path / "q.wav", "--workdir", workdir,
                       "--original-format")
  assert code == 0, err
  assert "does not store its recording's format" in out
  assert sf.info(str(tmp_path / "q.wav")).samplerate == 22050


def loud_events(codec, path, gain=600.0, n=12, seconds=1.5):
  """A file of `n` of the model's events at a gain whose decoded peak is far above 1."""
  rng = np.random.default_rng(0)
  n_audio = int(seconds * codec.sample_rate)
  events = sjx_events.EventSet(
      frames=np.linspace(0, n_audio // codec.hop - 1, n).astype(np.int64),
      offsets=np.zeros(n), gains=np.full(n, gain), vectors=rng.normal(size=(n, codec.event_dim)),
      sample_rate=codec.sample_rate, hop=codec.hop, window_samples=codec.n_samples,
      n_audio_samples=n_audio, model_id=codec.model_id)
  sjx.write(path, events)
  return str(path)


def test_clipping_is_counted_and_rescale_avoids_it(capsys, workdir, codec, tmp_path):
  src = loud_events(codec, tmp_path / "loud.sjx")
  peak = float(np.abs(codec.decode(sjx.read(src))).max())
  assert peak > 1.5
  code, _, err = run(capsys, "decode", src, tmp_path / "c.wav", "--workdir", workdir)
  assert code == 0
  clipped = int(np.count_nonzero(np.abs(codec.decode(sjx.read(src))) > 1))
  assert f"warning: {tmp_path / 'c.wav'}: {clipped} of" in err and "--rescale" in err
  code, out, err = run(capsys, "decode", src, tmp_path / "r.wav", "--workdir", workdir, "-r")
  assert code == 0 and "warning" not in err and "rescaled by" in out
  rescaled = sf.read(tmp_path / "r.wav", dtype="float32")[0]
  assert 0.98 < np.abs(rescaled).max() <= 0.99 + 1e-4
  code, _, err = run(capsys, "decode", src, tmp_path / "f.wav", "--workdir", workdir, "--float")
  assert code == 0 and "warning" not in err
  assert np.abs(sf.read(tmp_path / "f.wav", dtype="float32")[0]).max() == pytest.approx(peak)
  code, _, err = run(capsys, "decode", src, tmp_path / "x.wav", "--workdir", workdir, "--float",
                     "-r")
  assert code == 2 and "pass one of them" in err


class _Stdin:
  """Standard input holding `data` (the commands read sys.stdin.buffer)."""

  def __init__(self, data):
    self.buffer = io.BytesIO(data)


def test_dash_is_standard_input_and_output(capsysbinary, monkeypatch, workdir, rich, encoded,
                                           tmp_path):
  def run_bytes(*argv, stdin=b""):
    monkeypatch.setattr(sys, "stdin", _Stdin(stdin))
    code = cli.main([str(a) for a in argv])
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()

  wav_bytes = open(rich, "rb").read()
  assert run_bytes("encode", rich, tmp_path / "a.sjx", "--workdir", workdir, "--quiet")[0] == 0
  code, out, err = run_bytes("encode", "-", "-", "--workdir", workdir, "--quiet",
                             stdin=wav_bytes)
  assert code == 0, err
  assert out == open(tmp_path / "a.sjx", "rb").read() and "kbit/s" in err  # summary: stderr
  code, wav_out, err = run_bytes("decode", "-", "-", "--workdir", workdir, "--float", stdin=out)
  assert code == 0, err
  code, _, err = run_bytes("decode", tmp_path / "a.sjx", tmp_path / "a.wav", "--workdir",
                           workdir, "--float")
  assert code == 0, err
  # The same events decoded through stdout and into a file: the same audio (to float rounding:
  # the decoder may run them in batches of another size).
  from_stdout, sr_stdout = sf.read(io.BytesIO(wav_out), dtype="float32")
  from_file, sr_file = sf.read(tmp_path / "a.wav", dtype="float32")
  assert sr_stdout == sr_file and from_stdout.shape == from_file.shape
  np.testing.assert_allclose(from_stdout, from_file, atol=1e-6)
  code, info_out, err = run_bytes("info", "-", "--json", stdin=out)
  assert code == 0 and json.loads(info_out)["bytes"] == len(out)
  code, edited, err = run_bytes("edit", "-", "-", "--scale-gains", "0.5", stdin=out)
  assert code == 0 and sjx.decode_bytes(edited).n_audio_samples == sjx.decode_bytes(
      out).n_audio_samples and "gains x0.5" in err
  code, _, err = run_bytes("decode", "-", tmp_path / "b.wav", "--workdir", workdir,
                           stdin=b"not an sjx")
  assert code == 2 and err.startswith("error: <stdin>: not an SJX file")


def test_folders_mirror_the_tree_and_skip_failing_files(capsys, workdir, codec, tmp_path):
  tree, out, dec = tmp_path / "in", tmp_path / "out", tmp_path / "dec"
  (tree / "sub" / "deeper").mkdir(parents=True)
  write_clicks(str(tree / "a.wav"), seconds=0.3)
  (tree / "sub" / "broken.wav").write_text("not audio")  # fails in the middle of the batch
  write_clicks(str(tree / "sub" / "deeper" / "c.flac"), seconds=0.3)
  (tree / "notes.txt").write_text("not picked up")
  code, stdout, err = run(capsys, "encode", tree, out, "--workdir", workdir)
  assert code == 1
  assert sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out)
                for f in fs) == ["a.sjx", os.path.join("sub", "deeper", "c.sjx")]
  assert "encoded 2 of 3 files" in stdout
  assert "1 file(s) failed" in err and os.path.join("sub", "broken.wav") + ": cannot read" in err
  assert "encoding:" in err and "3/3" in err  # one bar for the whole tree
  assert sjx.read(out / "a.sjx").source_sample_rate == 44100
  # Decode the tree back, with a corrupt file in its middle; existing outputs need --force.
  (out / "sub" / "bad.sjx").write_bytes(b"SJX\0garbage")
  code, stdout, err = run(capsys, "decode", out, dec, "--workdir", workdir, "--float")
  assert code == 1 and "decoded 2 of 3 files" in stdout and "bad.sjx: " in err
  assert sf.info(str(dec / "sub" / "deeper" / "c.wav")).frames == sf.info(
      str(tree / "a.wav")).frames  # the recording's rate
  assert not (dec / "sub" / "bad.wav").exists()
  code, stdout, err = run(capsys, "decode", out, dec, "--workdir", workdir, "--quiet")
  assert code == 1 and "decoded 0 of 3" in stdout and err.count("already exists") == 2
  code, stdout, err = run(capsys, "decode", out, dec, "--workdir", workdir, "--quiet", "-f")
  assert code == 1 and "decoded 2 of 3" in stdout
  # No files to work on, or an output that is a file: one line before the model loads.
  (tmp_path / "empty").mkdir()
  code, _, err = run(capsys, "encode", tmp_path / "empty", tmp_path / "o",
                     "--workdir", BOGUS_WORKDIR)
  assert code == 2 and "holds no" in err
  code, _, err = run(capsys, "encode", tree, tree / "a.wav", "--workdir", BOGUS_WORKDIR)
  assert code == 2 and "is a file" in err


def test_import_json_says_what_was_imported(capsys, tmp_path):
  src = synthetic_sjx(tmp_path / "in.sjx")
  assert run(capsys, "edit", src, tmp_path / "o.sjx", "--export-json", tmp_path / "t.json")[0] == 0
  doc = json.loads((tmp_path / "t.json").read_text())
  doc["events"][1]["gain"] = 0.0
  doc["events"][2]["vector"][0] += 1
  (tmp_path / "h.json").write_text(json.dumps(doc))
  code, out, err = run(capsys, "edit", src, tmp_path / "h.sjx", "--import-json",
                       tmp_path / "h.json")
  assert code == 0, err
  assert "imported 4 events from h.json: 1 gains, 1 vectors changed" in out
  del doc["events"][0]
  (tmp_path / "d.json").write_text(json.dumps(doc))
  code, out, _ = run(capsys, "edit", src, tmp_path / "d.sjx", "--import-json", tmp_path / "d.json")
  assert code == 0 and f"imported 3 events from d.json ({src} has 4)" in out


def test_event_times_are_never_negative(capsys, tmp_path):
  ev = sjx_events.EventSet(
      frames=[0, 0, 3], offsets=[-60.0, 10.0, -30.0], gains=[1.0, 1.0, 1.0],
      vectors=np.ones((3, 8)), sample_rate=22050, hop=64, window_samples=2**14,
      n_audio_samples=22050, model_id=b"\x07" * 16)
  assert ev.times_seconds.min() == 0.0 and ev.start_samples[0] == -60.0
  doc = json.loads(edit.to_json(ev))
  assert [row["time_s"] >= 0 for row in doc["events"]] == [True] * 3
  back = edit.from_json(json.dumps(doc))  # frame, offset and the clamped time agree
  np.testing.assert_array_equal(back.offsets, ev.offsets)


def test_encode_and_decode_count_windows_alike(capsys, workdir, codec, tmp_path):
  src = loud_events(codec, tmp_path / "many.sjx", gain=0.01, n=200)
  events = sjx.read(src)
  assert events.n_windows == codec.windows_for(events.n_audio_samples)[1] == 5
  assert cli.info_dict(src)["windows"] == 5
  code, _, err = run(capsys, "decode", src, tmp_path / "m.wav", "--workdir", workdir)
  assert code == 0 and "decoding:" in err and "5/5" in err and "window" in err
