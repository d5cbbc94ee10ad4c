"""Bad and hostile input reaches the user as one line, with work in proportion to the real input.

Hostile `.sjx` files are built byte by byte by `benchmarks/hostile.py` (its own LEB128 and header
packing, not the writer's), because the writer never produces them.
"""
import os
import resource
import subprocess
import sys
import threading

import codec_fixtures
import numpy as np
import pytest
import soundfile as sf

from benchmarks.hostile import hostile_sjx
from sparse_jax import __main__ as entry
from sparse_jax import api, audio_io, diagnostics
from sparse_jax.cli import commands as cli
from sparse_jax.codec import events as events_lib
from sparse_jax.codec import sjx
from sparse_jax.data import subset
from sparse_jax.errors import UserError

MODEL_ID = bytes(range(16))


def run(capsys, argv, main=cli.main):
  code = main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def one_line(code, err, *needles):
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
  for needle in needles:
    assert needle in lines[0], lines[0]


# ----------------------------------------------------------------------------------------------
# Hostile event files: memory, time and output in proportion to the events present.


def test_one_far_event_is_refused_before_anything_is_allocated(capsys, tmp_path):
  """82 bytes, the shipped model's rate, hop and window, one event at the format's last frame and
  2^32 - 1 samples: `info` called it 54 hours and `decode` asked numpy for 16 GiB."""
  path = hostile_sjx(tmp_path / "far.sjx", frames=[(2**32 - 1) // 256], n_audio=2**32 - 1)
  assert os.path.getsize(path) == 82 + 2  # + the level of version 2
  peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  one_line(*run(capsys, ["info", path])[::2], "declares 194783.1 s", "2 windows",
           "--max-seconds")
  code, out, err = run(capsys, ["decode", path, tmp_path / "far.wav", "--workdir",
                                "/no/such/model"])
  one_line(code, err, "declares")  # refused before the model is even looked for
  assert not os.path.exists(tmp_path / "far.wav") and os.listdir(tmp_path) == ["far.sjx"]
  grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
  assert grown_kib < 100 * 1024, grown_kib
  with pytest.raises(UserError, match="declares"):
    api.read(path)


def test_small_window_far_event_is_refused_in_one_line(capsys, tmp_path):
  """Window 256, hop 128: `info` printed 33.5 million window counts (67 MB of text)."""
  path = hostile_sjx(tmp_path / "many.sjx", frames=[(2**32 - 1) // 128], n_audio=2**32 - 1,
                     hop=128, window=256)
  for argv in (["info", path], ["info", path, "--json"]):
    code, out, err = run(capsys, argv)
    one_line(code, err, "declares")
    assert out == ""


def test_a_trusted_length_is_read_with_max_seconds(capsys, tmp_path):
  """A version-1 file of one event 10 windows in and 2 windows of tail (an old edit's silence):
  over the per-event budget, read when the user vouches for its length."""
  window, n_audio = 2**16, 12 * 2**16
  path = hostile_sjx(tmp_path / "old.sjx", frames=[10 * window // 256], n_audio=n_audio,
                     version=1)
  one_line(*run(capsys, ["info", path])[::2], "--max-seconds 36")
  code, out, err = run(capsys, ["info", path, "--max-seconds", "36"])
  assert code == 0, err
  assert "events_per_window" in out and "35.66" in out
  assert api.read(path, max_seconds=36).n_audio_samples == n_audio
  one_line(*run(capsys, ["info", path, "--max-seconds", "nan"])[::2], "--max-seconds nan")


def test_info_summarises_many_windows(capsys, tmp_path):
  n_windows = 500
  events = events_lib.EventSet(
      frames=np.arange(n_windows), offsets=np.zeros(n_windows), gains=np.ones(n_windows),
      vectors=np.ones((n_windows, 2)), sample_rate=8000, hop=128, window_samples=256,
      n_audio_samples=128 * n_windows, model_id=MODEL_ID)
  path = str(tmp_path / "w.sjx")
  sjx.write(path, events)
  code, out, _ = run(capsys, ["info", path])
  assert code == 0
  line = [x for x in out.splitlines() if x.startswith("events_per_window ")][0]
  assert "min 1, median 1, max 1 over 500 windows" in line and len(line) < 200
  code, out, _ = run(capsys, ["info", path, "--json"])
  assert code == 0 and out.count("\n") < 600


def test_a_thousand_channels_decode_mono_at_the_model_rate(capsys, tmp_path):
  """A 1.6 KB file whose source word claims 1024 channels at 2^20 Hz wrote a 181 MB WAV (16 GiB
  at 2^20 Hz); decode now restores formats up to 64 channels and 768 kHz only."""
  codec = codec_fixtures.tiny_codec()
  rng = np.random.default_rng(0)
  n, n_audio = 110, 10 * 22050
  events = events_lib.EventSet(
      frames=np.sort(rng.integers(0, n_audio // codec.hop, n)), offsets=np.zeros(n),
      gains=np.full(n, 0.05), vectors=rng.normal(size=(n, codec.event_dim)), sample_rate=22050,
      hop=codec.hop, window_samples=codec.n_samples, n_audio_samples=n_audio,
      model_id=codec.model_id, source_sample_rate=2**20, source_channels=1024, level=1.0)
  src = str(tmp_path / "wide.sjx")
  sjx.write(src, events)
  assert os.path.getsize(src) < 1700
  out = tmp_path / "wide.wav"
  code, stdout, err = run(capsys, ["decode", src, out, "--workdir",
                                   codec_fixtures.tiny_workdir(), "--quiet"])
  assert code == 0, err
  info = sf.info(str(out))
  assert (info.samplerate, info.channels, info.frames) == (22050, 1, n_audio)
  assert os.path.getsize(out) < 20 * 2**20
  assert "1024 channels at 1048576 Hz, beyond what decode restores" in stdout
  # 64 channels at 48 kHz is still a format decode gives back; 65 is not.
  assert sjx.restorable(48000, 64) and not sjx.restorable(48000, 65)
  assert not sjx.restorable(768_001, 2) and not sjx.restorable(0, 0)


# ----------------------------------------------------------------------------------------------
# Paths and values.


def test_non_regular_inputs_are_refused_without_blocking(capsys, tmp_path):
  fifo = str(tmp_path / "pipe.wav")
  os.mkfifo(fifo)
  # If a command opened the FIFO it would block for ever: a writer unblocks it after 20 s, so a
  # regression fails this test instead of hanging the suite.
  def unblock():
    try:
      fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
      os.close(fd)
    except OSError:
      pass
  timer = threading.Timer(20.0, unblock)
  timer.start()
  try:
    for argv in (["encode", fifo, tmp_path / "x.sjx"], ["info", fifo],
                 ["decode", fifo, tmp_path / "x.wav"], ["report", fifo, "--out", tmp_path / "r"]):
      one_line(*run(capsys, argv)[::2], "not a regular file", "- to read standard input")
    with pytest.raises(UserError, match="not a regular file"):
      audio_io.read_audio(fifo)
  finally:
    timer.cancel()


def test_a_missing_input_is_refused_before_jax_is_imported(tmp_path):
  code = ("import sys\n"
          "from sparse_jax.__main__ import main\n"
          "rc = [main(a) for a in (['encode', 'nothere.wav', 'x.sjx'], ['info', 'nothere.sjx'],\n"
          "      ['decode', 'nothere.sjx', 'x.wav'], ['report', 'nothere.wav', '--out', 'r'])]\n"
          "print(rc, sorted(m for m in ('jax', 'flax', 'scipy') if m in sys.modules))\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                        text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, check=False)
  assert done.stdout.strip() == "[2, 2, 2, 2] []", done.stdout + done.stderr
  assert done.stderr.count("no such file") == 4, done.stderr


def test_gather_audio_and_build_data_refuse_bad_values_in_one_line(capsys, tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  for argv, needle in ((["gather-audio", a_file], "is a file"),
                       (["gather-audio", a_file / "sub" / "out"], "cannot be made"),
                       (["build-data", "--workers", "-1", "--root", tmp_path], "--workers -1"),
                       (["build-data", "--timeout", "nan", "--root", tmp_path], "--timeout nan"),
                       (["build-data", "--timeout", "0", "--root", tmp_path], "--timeout 0")):
    one_line(*run(capsys, argv, main=entry.main)[::2], needle)
  assert os.listdir(tmp_path) == ["file"]


def test_a_model_that_is_no_archive_says_what_it_is(capsys, tmp_path):
  events_file = tmp_path / "song.npz"
  events_file.write_bytes(b"SJX\x00\x02" + bytes(60))
  with pytest.raises(UserError, match=r"it is an \.sjx event file, not an \.npz archive"):
    api.load_codec(events_file)
  wav = tmp_path / "a.wav"
  sf.write(wav, np.zeros(100), 8000)
  code, _, err = run(capsys, ["encode", wav, tmp_path / "a.sjx", "--model", wav])
  one_line(code, err, "a WAV/RIFF file, not an .npz archive")
  assert "pickled" not in err


def test_library_errors_name_no_command_line_flags(tmp_path):
  codec = codec_fixtures.tiny_codec()
  audio = np.zeros(4096, np.float32)
  audio[100] = 1
  calls = [lambda: api.load_codec(str(tmp_path / "missing")),
           lambda: api.encode(codec, audio, n_events=0),
           lambda: api.encode(codec, audio, residual_threshold=2.0),
           lambda: api.encode(codec, audio, kbps=-1),
           lambda: api.encode(codec, audio, kbps=3, n_events=2),
           lambda: api.encode(codec, audio, bits=12),
           lambda: api.encode(codec, audio, refine="x")]
  for call in calls:
    with pytest.raises(UserError) as e:
      call()
    assert "--" not in str(e.value), str(e.value)


def test_a_gsm_wav_is_read_whole_for_a_benchmark_clip(tmp_path):
  """GSM 6.10 in a WAV (telephone speech) cannot seek: its clip is read whole and sliced."""
  folder = tmp_path / "speech"
  folder.mkdir()
  t = np.arange(8000 * 12) / 8000
  sf.write(folder / "call.wav", (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000,
           subtype="GSM610", format="WAV")
  (clip,) = subset.choose_clips([str(folder)], 1, 8.0)
  audio = subset.load_clip(clip, 22050)
  assert audio.size == 8 * 22050
  spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
  assert abs(np.argmax(spectrum) * 22050 / audio.size - 440) < 5  # the tone, from the slice


# ----------------------------------------------------------------------------------------------
# What the library prints.


BANNER = (b"E1207 13:21:47.123456    1234 slow_operation_alarm.cc:73] \n" + b"*" * 32 + b"\n" +
          b"[Compiling module jit_fn] Very slow compile? If you want to file a bug, run with "
          b"envvar XLA_FLAGS=--xla_dump_to=/tmp/foo and attach the results.\n" + b"*" * 32 + b"\n")


def test_xla_alarms_are_kept_from_stderr_and_nothing_else_is(capfd):
  with diagnostics.without_xla_alarms():
    os.write(2, b"\rbar 1/3")
    os.write(2, BANNER[:20])  # a banner may arrive in pieces
    os.write(2, BANNER[20:])
    os.write(2, b"\rbar 2/3\n")
    with diagnostics.without_xla_alarms():  # nested: one filter
      os.write(2, b"E1207 13:21:48.000000 1 other.cc:1] a real error\n")
  err = capfd.readouterr().err
  assert err == "\rbar 1/3\rbar 2/3\nE1207 13:21:48.000000 1 other.cc:1] a real error\n", err


def test_the_api_draws_no_bar_and_lets_no_alarm_through(capfd):
  """An XLA banner written while `api.encode` runs (here by a window hook, as XLA's alarm thread
  writes it during a compilation) does not reach stderr; nor does a progress bar by default."""
  codec = codec_fixtures.tiny_codec()
  audio = np.random.default_rng(0).normal(size=5 * codec.n_samples).astype(np.float32) * 0.1
  api.encode(codec, audio, window_hook=lambda trace: os.write(2, BANNER))
  assert capfd.readouterr().err == ""
  api.encode(codec, audio, progress=True)
  assert "window" in capfd.readouterr().err


def test_folder_encode_shows_the_windows_of_each_file(capsys, tmp_path):
  codec = codec_fixtures.tiny_codec()
  tree = tmp_path / "in"
  tree.mkdir()
  sf.write(tree / "long.wav", np.random.default_rng(1).normal(size=6 * codec.n_samples) * 0.1,
           22050)
  code, out, err = run(capsys, ["encode", tree, tmp_path / "out", "--workdir",
                                codec_fixtures.tiny_workdir()])
  assert code == 0, err
  assert "encoding:" in err and "file" in err and "window" in err  # both bars
