"""The shipped model and generator files: what `encode`/`decode` use with no --workdir."""
import os
import zipfile

import codec_fixtures
import jax
import numpy as np
import pytest
import synthetic

from sparse_jax import api, generator, pretrained
from sparse_jax.cli import commands as cli
from sparse_jax.errors import UserError

# Part of `make test` (CI), not of `make test-fast`: compiles the shipped model.
pytestmark = pytest.mark.slow

# configs/pretrained.py's generator, as `python -m sparse_jax info --config configs/pretrained.py`
# counts it.
SHIPPED_PARAMETERS = 5_687_127
# One event of the shipped model: vector linspace(-1, 1, 16), frame 10, gain 0.5, no fine shift
# (computed once with jax 0.10.2 on the development machine's CPU; float32).
GOLDEN_EVENT = {"energy": 0.4012923864952741, "peak_index": 3376, "peak": -0.05202993378043175,
                "samples": {3000: -0.00216680858284235, 5000: 0.0008984589949250221,
                            10000: 0.00013183680130168796}}


@pytest.fixture(scope="module")
def shipped():
  return api.load_codec()


def test_the_shipped_model_is_small_and_holds_the_generator_only(shipped):
  assert os.path.getsize(pretrained.MODEL_PATH) <= 16 * 2**20
  with np.load(pretrained.MODEL_PATH) as z:
    params = [n for n in z.files if n.startswith("p/")]
    assert all(z[n].dtype == np.float16 for n in params)
    assert not any("opt" in n or "disc" in n for n in z.files)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shipped.g_params))
  assert count == SHIPPED_PARAMETERS
  assert (shipped.sample_rate, shipped.n_samples, shipped.hop, shipped.event_dim) == (
      22050, 2**16, 256, 16)


def test_one_event_of_the_shipped_model_matches_its_golden_values(shipped):
  vector = np.linspace(-1, 1, 16, dtype=np.float32)[None]
  audio = shipped.render(vector, np.array([10]), np.array([0.5]), np.array([0.0]))[0]
  assert np.sum(audio.astype(np.float64)**2) == pytest.approx(GOLDEN_EVENT["energy"], rel=1e-4)
  assert int(np.argmax(np.abs(audio))) == GOLDEN_EVENT["peak_index"]
  assert audio[GOLDEN_EVENT["peak_index"]] == pytest.approx(GOLDEN_EVENT["peak"], rel=1e-4)
  for index, value in GOLDEN_EVENT["samples"].items():
    assert audio[index] == pytest.approx(value, rel=1e-3, abs=1e-7)
  # Nothing sounds before the event's frame (10 x hop 256).
  assert np.abs(audio[:10 * 256]).max() < 1e-6


def test_encode_and_decode_need_no_workdir_and_give_back_the_input_format(tmp_path, capsys):
  """A 44.1 kHz stereo recording comes back 44.1 kHz stereo at its own level (RMS within 1 dB),
  through the file and through the one-step round trip; --model-format keeps the raw output."""
  import soundfile as sf
  wav = str(tmp_path / "x.wav")
  left = synthetic.note_sequence(2 * 44100, 44100, seed=3)
  right = synthetic.note_sequence(2 * 44100, 44100, seed=4)
  stereo = 0.7 * np.stack([left, right], axis=1) / np.abs(left).max()
  sf.write(wav, stereo, 44100)
  stereo = sf.read(wav)[0]  # as the 16-bit file holds it
  sjx_path, out, raw = str(tmp_path / "x.sjx"), str(tmp_path / "y.wav"), str(tmp_path / "r.wav")
  assert cli.main(["encode", wav, sjx_path, "--quiet"]) == 0
  assert cli.main(["decode", sjx_path, out, "--quiet"]) == 0
  decoded, rate = sf.read(out, always_2d=True)
  assert rate == 44100 and decoded.shape == stereo.shape
  level_db = lambda x: 20 * np.log10(np.sqrt(np.mean(np.square(x))))
  assert abs(level_db(decoded) - level_db(stereo)) < 1.0, (level_db(decoded), level_db(stereo))
  assert cli.main(["encode", wav, str(tmp_path / "rt.wav"), "--quiet"]) == 0
  # The same audio (to one 16-bit step: the file sorts the events, so the sums' order differs).
  np.testing.assert_allclose(sf.read(str(tmp_path / "rt.wav"), always_2d=True)[0], decoded,
                             atol=1.01 / 2**15)
  assert cli.main(["decode", sjx_path, raw, "--quiet", "--model-format"]) == 0
  plain, rate = sf.read(raw)
  assert rate == 22050 and plain.shape == (2 * 22050,)
  # The raw output is quieter: downmixed, band-limited, partly explained.
  assert level_db(plain) < level_db(decoded) - 0.5
  events = api.read(sjx_path)
  assert events.model_id == api.load_codec().model_id and events.level > 1


def test_decode_without_workdir_names_the_way_out_for_another_models_file(tmp_path, capsys):
  codec = codec_fixtures.tiny_codec()
  events = codec.encode(synthetic.note_sequence(4096, 22050, seed=1))
  path = str(tmp_path / "other.sjx")
  api.write(path, events)
  assert cli.main(["decode", path, str(tmp_path / "y.wav"), "--quiet"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "not encoded by the shipped model" in err[0] and "--workdir" in err[0]
  assert not os.path.exists(tmp_path / "y.wav")


# ----------------------------------------------------------------------------------------------
# Generator files (python -m sparse_jax export).


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
  workdir = codec_fixtures.tiny_workdir()
  folder = tmp_path_factory.mktemp("gen")
  out = {}
  for dtype in ("float32", "float16"):
    out[dtype] = str(folder / f"g{dtype}.npz")
    generator.export_workdir(workdir, out[dtype], dtype=np.dtype(dtype))
  return workdir, out


def test_a_generator_file_decodes_like_its_workdir(tiny_files):
  workdir, files = tiny_files
  full = api.load_codec(workdir)
  exact = api.load_codec(files["float32"])
  half = api.load_codec(files["float16"])
  assert exact.model_id == full.model_id  # the same parameters: files stay decodable
  assert half.model_id != full.model_id  # rounded parameters are another model
  for a, b, c in zip(jax.tree.leaves(full.g_params), jax.tree.leaves(exact.g_params),
                     jax.tree.leaves(half.g_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-3, atol=1e-4)
  audio = synthetic.note_sequence(8192, 22050, seed=2)
  events = full.encode(audio)
  np.testing.assert_array_equal(exact.decode(events), full.decode(events))


def _rewrite(src, dst, change):
  with np.load(src) as z:
    arrays = {n: z[n] for n in z.files}
  change(arrays)
  with open(dst, "wb") as f:
    np.savez(f, **arrays)


def _first_param(arrays):
  return sorted(n for n in arrays if n.startswith("p/"))[0]


@pytest.mark.parametrize("damage, message", [
    ("truncate", "not a usable sparse_jax generator file"),
    ("not_zip", "not a usable sparse_jax generator file"),
    ("missing", "is missing"),
    ("shape", "the config needs"),
    ("nan", "non-finite"),
    ("extra", "unknown parameter"),
    ("pickle", "not a usable sparse_jax generator file"),
    ("format", "format 99"),
])
def test_a_damaged_or_hostile_generator_file_is_one_line(tiny_files, tmp_path, damage, message):
  src = tiny_files[1]["float16"]
  bad = str(tmp_path / "bad.npz")
  if damage == "truncate":
    with open(src, "rb") as f:
      blob = f.read()
    with open(bad, "wb") as f:
      f.write(blob[:len(blob) // 2])
  elif damage == "not_zip":
    with open(bad, "wb") as f:
      f.write(b"RIFF" + bytes(100))
  elif damage == "pickle":
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(bad, "w") as out:
      for name in z.namelist():
        out.writestr(name, z.read(name))
      # An object array: loading it would unpickle (run code); it must be refused.
      import io
      buf = io.BytesIO()
      np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
      out.writestr("p/zz_evil.npy", buf.getvalue())
  else:
    def change(arrays):
      name = _first_param(arrays)
      if damage == "missing":
        del arrays[name]
      elif damage == "shape":
        arrays[name] = arrays[name].reshape(-1)[:-1]
      elif damage == "nan":
        arrays[name] = np.full_like(arrays[name], np.nan)
      elif damage == "extra":
        arrays["p/extra/kernel"] = np.zeros(3, np.float16)
      elif damage == "format":
        arrays["format"] = np.asarray(99)
    _rewrite(src, bad, change)
  with pytest.raises(UserError, match=message) as info:
    api.load_codec(bad)
  assert "\n" not in str(info.value)


def test_export_refuses_a_missing_folder_and_writes_nothing_on_failure(tiny_files, tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    generator.export_workdir(tiny_files[0], str(tmp_path / "no" / "g.npz"))
  assert not os.path.exists(tmp_path / "no")


def test_the_codec_reads_only_the_generator_of_a_checkpoint():
  from sparse_jax import checkpoint
  workdir = codec_fixtures.tiny_workdir()
  _, _, g_params, model_id, step = checkpoint.restore_generator(workdir)
  _, _, state, extra = checkpoint.restore_train_state(workdir)
  assert model_id == extra["model_id"] and step == int(state.step)
  full = jax.tree_util.tree_leaves_with_path(state.g_params)
  part = jax.tree_util.tree_leaves_with_path(g_params)
  assert [p for p, _ in full] == [p for p, _ in part]
  for (_, a), (_, b) in zip(full, part):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
