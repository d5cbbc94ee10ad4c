"""Tests for the HTML report (sparse_jax/codec/report.py): t-SNE, files, and that it renders."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import codec_fixtures
import synthetic
from sparse_jax.codec import cli, report

CHROMIUM = "/usr/bin/chromium"


# ------------------------------------------------------------------------------------------------
# The embedding pieces.


def test_conditional_affinities_match_the_perplexity():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 5))
  sq = (x * x).sum(1)
  dist2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
  p = report._conditional_p(dist2, perplexity=8.0)
  np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
  assert np.all(np.diag(p) == 0)
  entropy = -np.sum(np.where(p > 0, p * np.log(np.maximum(p, 1e-300)), 0), axis=1)
  np.testing.assert_allclose(np.exp(entropy), 8.0, rtol=1e-3)
  # Nearer points get more affinity (row 0: closest vs farthest neighbour).
  d0 = dist2[0, 1:]
  assert p[0, 1 + np.argmin(d0)] > p[0, 1 + np.argmax(d0)]


def test_tsne_1d_separates_clusters_and_keeps_neighbours():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(3, 32)) * 10
  labels = np.repeat(np.arange(3), 20)
  x = centres[labels] + rng.normal(size=(60, 32))
  y = report.tsne_1d(x, perplexity=10, seed=0)
  assert y.shape == (60,) and np.all(np.isfinite(y))
  # Each cluster occupies its own interval of the line.
  order = labels[np.argsort(y)]
  assert np.count_nonzero(np.diff(order)) == 2
  assert report.tsne_1d(x[:1]).tolist() == [0.0]
  assert report.tsne_1d(np.zeros((0, 4))).shape == (0,)
  assert np.all(np.isfinite(report.tsne_1d(np.ones((5, 3)))))  # identical points


def test_minmax_and_colours():
  x = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 3.0], [1.0, 5.0, 2.0]])
  np.testing.assert_allclose(report.minmax_normalise(x),
                             [[0, 0, 0], [1, 0, 1], [0.5, 0, 0.5]])
  rgb = report.random_rgb(report.minmax_normalise(x), seed=0)
  assert rgb.shape == (3, 3) and rgb.min() >= 0 and rgb.max() <= 1
  # Projection of a point halfway between two others is halfway in colour (linear, then scaled).
  np.testing.assert_allclose(rgb[2], (rgb[0] + rgb[1]) / 2)


# ------------------------------------------------------------------------------------------------
# The page.


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """A report of ~1.4 windows of notes, built through the command line."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  folder = tmp_path_factory.mktemp("report")
  codec = codec_fixtures.tiny_codec()
  n = codec.n_samples
  audio = np.concatenate([synthetic.note_sequence(n, codec.sample_rate, seed=1),
                          0.5 * synthetic.note_sequence(n // 2, codec.sample_rate, seed=2)])
  wav = str(folder / "notes.wav")
  sf.write(wav, audio, codec.sample_rate, subtype="FLOAT")
  out = folder / "rep"
  code = cli.main(["report", wav, "--workdir", codec_fixtures.tiny_workdir(), "--out", str(out)])
  assert code == 0
  return out, audio


def referenced_files(page):
  return re.findall(r'(?:src|href|data-src)="([^"]+)"', page)


def test_report_files_exist_and_page_is_self_contained(built):
  out, audio = built
  page = (out / "index.html").read_text()
  names = referenced_files(page)
  for expected in ("original.wav", "reconstruction.wav", "random_vectors.wav", "random_times.wav",
                   "perturbed.wav", "timeline.png", "residual_steps.png", "energy_curve.png",
                   "event_vectors.png"):
    assert expected in names, expected
  assert any(n.startswith("events/event_") for n in names)
  for name in names:
    assert (out / name).is_file(), name
  assert "http:" not in page and "https:" not in page and "<script src" not in page
  # Every event of the timeline has its clip, and nothing else is in events/.
  clips = sorted(n for n in names if n.startswith("events/"))
  assert sorted("events/" + f for f in os.listdir(out / "events")) == clips
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  original, rate = sf.read(out / "original.wav", dtype="float32")
  np.testing.assert_array_equal(original, audio)
  for name in ("reconstruction.wav", "random_times.wav"):
    assert sf.info(str(out / name)).frames == audio.size
  # Nothing temporary left beside the report.
  assert sorted(os.listdir(out.parent)) == ["notes.wav", "rep"]


def test_a_finished_report_replaces_the_old_folder_in_one_step(tmp_path):
  target = tmp_path / "r"
  target.mkdir()
  (target / "stale.txt").write_text("old")
  fresh = tmp_path / ".r.tmp"
  fresh.mkdir()
  (fresh / "index.html").write_text("new")
  report._replace_dir(str(fresh), str(target))
  assert os.listdir(target) == ["index.html"] and os.listdir(tmp_path) == ["r"]
  (tmp_path / "file").write_text("x")
  fresh.mkdir()
  with pytest.raises(report.UserError, match="is a file"):
    report._replace_dir(str(fresh), str(tmp_path / "file"))


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_report_renders_in_headless_chromium(built, tmp_path):
  import matplotlib.image  # pylint: disable=g-import-not-at-top
  out, _ = built
  shot = tmp_path / "shot.png"
  subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                  f"--screenshot={shot}", "--window-size=1200,2000",
                  f"file://{out / 'index.html'}"],
                 check=True, timeout=120, capture_output=True)
  pixels = matplotlib.image.imread(str(shot))[..., :3]
  assert pixels.shape[:2] == (2000, 1200)
  not_white = np.mean(np.any(pixels < 0.9, axis=-1))
  assert not_white > 0.05, not_white  # text, players, figures
  # The spectrogram grid's dark colours are on the page (the figures loaded, not just the text).
  assert np.mean(np.all(pixels < 0.3, axis=-1)) > 0.005
  # The inline script: clicking a point loads that event's clip into the player.
  probe = out / "probe.html"
  probe.write_text((out / "index.html").read_text().replace("</body>", """<script>
var c = document.querySelectorAll('circle[data-src]')[1];
c.dispatchEvent(new MouseEvent('click'));
document.body.setAttribute('data-probe', document.getElementById('event-player').getAttribute('src')
  + '|' + document.getElementById('event-label').textContent + '|' + c.getAttribute('class'));
</script></body>"""))
  try:
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          f"file://{probe}"],
                         check=True, timeout=120, capture_output=True, text=True).stdout
  finally:
    probe.unlink()
  assert 'data-probe="events/event_0001.wav|event 1: ' in dom
  assert '|playing"' in dom
  shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_report_summary_has_the_representation_health_figures(built):
  page = (built[0] / "index.html").read_text()
  rank = re.search(r"effective rank</td><td>([0-9.]+) of (\d+) dimensions", page)
  assert rank and 1.0 <= float(rank.group(1)) <= int(rank.group(2))
  cosine = re.search(r"mean \|cosine\|</td><td>([0-9.]+)", page)
  assert cosine and 0.0 <= float(cosine.group(1)) <= 1.0
  assert re.search(r"first 4 frames</td><td>[0-9.]+%", page)
  assert re.search(r"spectral centroids</td><td>[0-9.]+ octaves", page)
