"""Tests for the HTML report (sparse_jax/report/: assemble, timeline, figures and page):
t-SNE, files, and that it renders."""
import os
import re
import shutil
import subprocess

import codec_fixtures
import numpy as np
import pytest
import synthetic

from sparse_jax import files
from sparse_jax.cli import commands as cli
from sparse_jax.report import assemble as report
from sparse_jax.report import figures, timeline

# Part of `make test` (CI), not of `make test-fast`: builds whole reports (t-SNE, MP3s, figures).
pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"


# ------------------------------------------------------------------------------------------------
# The embedding pieces.


def test_tsne_1d_separates_clusters_and_keeps_neighbours():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(3, 32)) * 10
  labels = np.repeat(np.arange(3), 20)
  x = centres[labels] + rng.normal(size=(60, 32))
  y = timeline.tsne_1d(x, perplexity=10, seed=0)
  assert y.shape == (60,) and np.all(np.isfinite(y))
  # Each cluster occupies its own interval of the line.
  order = labels[np.argsort(y)]
  assert np.count_nonzero(np.diff(order)) == 2
  assert timeline.tsne_1d(x[:1]).tolist() == [0.0]
  assert timeline.tsne_1d(np.zeros((0, 4))).shape == (0,)
  assert np.all(np.isfinite(timeline.tsne_1d(np.ones((5, 3)))))  # identical points


def test_piano_roll_axis_names_notes_and_clusters_follow_timbre():
  assert [timeline.note_name(m) for m in (21, 60, 61, 69, 108)] == ["A0", "C4", "C#4", "A4", "C8"]
  y, ticks = timeline.pitch_axis(np.array([60.0, 64.0, np.nan, 73.0]))
  np.testing.assert_array_equal(y, [60, 64, 58, 73])  # pitchless: two below the lowest
  assert ticks == [(60.0, "C4"), (72.0, "C5"), (58.0, "no pitch")]
  # Two timbres far apart, the larger first: labels by size, the same for either seed.
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(0, 0.01, (7, 4)), rng.normal(1, 0.01, (3, 4))])
  for seed in (0, 1):
    labels = timeline.timbre_clusters(x, k=2, seed=seed)
    assert labels.tolist() == [0] * 7 + [1] * 3
  assert timeline.timbre_clusters(x[:1]).tolist() == [0]


def test_minmax_and_colours():
  x = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 3.0], [1.0, 5.0, 2.0]])
  np.testing.assert_allclose(timeline.minmax_normalise(x),
                             [[0, 0, 0], [1, 0, 1], [0.5, 0, 0.5]])
  rgb = timeline.random_rgb(timeline.minmax_normalise(x), seed=0)
  assert rgb.shape == (3, 3) and rgb.min() >= 0 and rgb.max() <= 1
  # Projection of a point halfway between two others is halfway in colour (linear, then scaled).
  np.testing.assert_allclose(rgb[2], (rgb[0] + rgb[1]) / 2)


# ------------------------------------------------------------------------------------------------
# The page.


def twelve_seconds(sample_rate, seed=0):
  """12 s: plucked notes throughout, a noise burst at 6 s and a held chord at 9 s (what the issue's
  sox-made test piece had, made here in code)."""
  n = 12 * sample_rate
  rng = np.random.default_rng(seed)
  segment = sample_rate  # one second of notes at a time, each with its own seed
  audio = np.concatenate([synthetic.note_sequence(2 * segment, sample_rate, seed=seed + k)[:segment]
                          for k in range(12)])
  burst = slice(6 * sample_rate, int(6.3 * sample_rate))
  n_burst = burst.stop - burst.start
  audio[burst] += 0.5 * rng.standard_normal(n_burst) * np.linspace(1, 0, n_burst)
  t = np.arange(3 * sample_rate) / sample_rate
  chord = sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392)) * np.exp(-t / 1.5) / 3
  audio[9 * sample_rate:] += chord.astype(np.float32)
  return (0.9 * audio[:n] / np.abs(audio).max()).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """A report of the whole of a 12 s file, built through the command line."""
  import soundfile as sf
  folder = tmp_path_factory.mktemp("report")
  codec = codec_fixtures.tiny_codec()
  audio = twelve_seconds(codec.sample_rate)
  wav = str(folder / "piece.wav")
  sf.write(wav, audio, codec.sample_rate, subtype="FLOAT")
  out = folder / "rep"
  code = cli.main(["report", wav, "--workdir", codec_fixtures.tiny_workdir(), "--out", str(out)])
  assert code == 0
  return out, audio


def referenced_files(page):
  return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_report_covers_the_whole_file_and_stays_light(built, capsys):
  out, audio = built
  page = (out / "index.html").read_text()
  names = referenced_files(page)
  assert sorted(names) == sorted([name for name, _ in report.AUDIO_FILES] + ["events.mp3"]
                                 + list(report.FIGURES))
  assert sorted(os.listdir(out)) == sorted(names + ["index.html"])  # nothing else in the folder
  assert "http:" not in page and "https:" not in page and "<script src" not in page
  # The whole file: 12 s, every window, points up to the end of the timeline.
  import soundfile as sf
  codec = codec_fixtures.tiny_codec()
  for name, _ in report.AUDIO_FILES:
    assert abs(sf.info(str(out / name)).duration - 12.0) < 0.05, name
  windows = codec.windows_for(audio.size)[1]
  assert f"in {windows} windows" in page and "12.00 s</td>" in page
  times = [float(t) for t in re.findall(r'data-label="event \d+: ([0-9.]+) s', page)]
  assert max(times) > 10.0
  # Light: a few files, well under a megabyte (it was 29 MB and 512 WAV files for 12 s).
  size = sum(os.path.getsize(out / name) for name in os.listdir(out))
  assert size < 1.5e6, size
  # Each clickable point names its clip inside events.mp3, in order, without overlaps.
  found = re.findall(r'data-start="([0-9.]+)" data-end="([0-9.]+)"', page)
  # Both views (the piano roll and the t-SNE tab) hold every clickable point once.
  assert all(found.count(span) == 2 for span in found)
  spans = sorted({(float(a), float(b)) for a, b in found})
  assert 0 < len(spans) <= report.MAX_CLIPS
  assert all(a < b <= c for (a, b), (c, _) in zip(spans, spans[1:] + [(1e9, 0)]))
  assert spans[-1][1] <= sf.info(str(out / "events.mp3")).duration
  # Axes with units, titles that say what is plotted.
  assert "event time (s)" in page and "1-D t-SNE of the vector" in page
  assert 'data-view="view0">Piano roll' in page and "timbre 1 (" in page
  assert re.search(r">(no pitch|[A-G]#?-?\d)</text>", page)  # the pitch axis names notes
  # Nothing temporary left beside the report.
  assert sorted(os.listdir(out.parent)) == ["piece.wav", "rep"]


def test_report_prints_its_progress(tmp_path, capsys):
  import soundfile as sf
  codec = codec_fixtures.tiny_codec()
  wav = str(tmp_path / "short.wav")
  sf.write(wav, twelve_seconds(codec.sample_rate)[:3 * codec.sample_rate], codec.sample_rate)
  code = cli.main(["report", wav, "--workdir", codec_fixtures.tiny_workdir(), "--out",
                   str(tmp_path / "r"), "--max-seconds", "2"])
  err = capsys.readouterr().err
  assert code == 0
  for stage in ("report: encoding 2.0 s", "encoding:", "report: t-SNE", "report: figures"):
    assert stage in err, (stage, err)
  page = (tmp_path / "r" / "index.html").read_text()
  assert "2.00 s of 3.00 s (--max-seconds)" in page


def test_figures_have_axes_with_units(built):
  """The figure functions label what they plot (read back from matplotlib, not from pixels)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.figure import Figure
  labels = []
  original = Figure.savefig

  def keep(fig, path, *args, **kwargs):  # matplotlib's own seam: what each figure saves
    for ax in fig.axes:
      labels.append((os.path.basename(str(path)), ax.get_xlabel(), ax.get_ylabel(),
                     ax.get_title()))
    return original(fig, path, *args, **kwargs)

  Figure.savefig = keep
  try:
    shares = np.array([[1.0, 0.8, 0.7], [1.0, 0.9, 0.85]])
    figures.energy_png(os.devnull, shares, np.array([2, 2]), 0, "window 1")
    figures.residual_png(os.devnull, [np.ones((5, 4)), 0.5 * np.ones((5, 4))],
                          ["input", "after step 1"], 22050, 64, "title")
    figures.vectors_png(os.devnull, np.zeros((3, 8)), "vectors")
  finally:
    Figure.savefig = original
    plt.close("all")
  energy = [a for a in labels if a[3].startswith("Energy removed")]
  assert energy and energy[0][1].startswith("removal step") and energy[0][2] == "energy removed (%)"
  residual_axes = [a for a in labels if a[3] in ("input", "after step 1")]
  assert all(a[1] == "time in window (s)" for a in residual_axes)
  assert residual_axes[0][2] == "frequency (kHz)"
  assert any("dB" in a[2] for a in labels)  # the shared colour bar
  assert any(a[1] == "vector dimension" and a[2] == "event (removal order)" for a in labels)


def test_a_finished_report_replaces_the_old_folder_in_one_step(tmp_path):
  target = tmp_path / "r"
  target.mkdir()
  (target / "stale.txt").write_text("old")
  fresh = tmp_path / ".r.tmp"
  fresh.mkdir()
  (fresh / "index.html").write_text("new")
  files.replace_folder(str(fresh), str(target), "the report")
  assert os.listdir(target) == ["index.html"] and os.listdir(tmp_path) == ["r"]
  (tmp_path / "file").write_text("x")
  fresh.mkdir()
  with pytest.raises(report.UserError, match="is a file"):
    files.replace_folder(str(fresh), str(tmp_path / "file"), "the report")


def _chromium(tmp_path, *args, **kwargs):
  return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--no-first-run", "--hide-scrollbars",
                         f"--user-data-dir={tmp_path / 'profile'}", *args],
                        check=True, timeout=120, capture_output=True, **kwargs)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed")
def test_report_renders_in_headless_chromium(built, tmp_path):
  import matplotlib.image
  out, _ = built
  shot = tmp_path / "shot.png"
  _chromium(tmp_path, f"--screenshot={shot}", "--window-size=900,2400",
            f"file://{out / 'index.html'}")
  pixels = matplotlib.image.imread(str(shot))[..., :3]
  assert pixels.shape[:2] == (2400, 900)
  not_white = np.mean(np.any(pixels < 0.9, axis=-1))
  assert not_white > 0.05, not_white  # text, players, figures
  # The spectrograms' dark colours are on the page (the figures loaded, not just the text).
  assert np.mean(np.all(pixels < 0.3, axis=-1)) > 0.005
  # A 900 px window: nothing wider than it (no sideways scrolling); clicking a point plays its
  # clip out of events.mp3.
  probe = out / "probe.html"
  probe.write_text((out / "index.html").read_text().replace("</body>", """<script>
var c = document.querySelectorAll('circle[data-start]')[1];
c.dispatchEvent(new MouseEvent('click'));
var p = document.getElementById('event-player');
document.body.setAttribute('data-probe', p.getAttribute('src') + '|' + p.getAttribute('data-clip')
  + '|' + document.getElementById('event-label').textContent + '|' + c.getAttribute('class')
  + '|' + c.getAttribute('data-start') + '-' + c.getAttribute('data-end')
  + '|' + (document.documentElement.scrollWidth <= window.innerWidth));
</script></body>"""))
  try:
    dom = _chromium(tmp_path, "--window-size=900,1000", "--dump-dom", f"file://{probe}",
                    text=True).stdout
  finally:
    probe.unlink()
  probe_value = re.search(r'data-probe="([^"]*)"', dom).group(1).split("|")
  assert probe_value[0] == "events.mp3" and probe_value[1] == probe_value[4]
  assert probe_value[2].startswith("event ") and probe_value[3] == "playing"
  assert probe_value[5] == "true", "the page scrolls sideways in a 900 px window"
  shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_report_summary_has_the_representation_health_figures(built):
  page = (built[0] / "index.html").read_text()
  rank = re.search(r"effective rank</td><td>([0-9.]+) of (\d+) dimensions", page)
  assert rank and 1.0 <= float(rank.group(1)) <= int(rank.group(2))
  cosine = re.search(r"mean \|cosine\|</td><td>([0-9.]+)", page)
  assert cosine and 0.0 <= float(cosine.group(1)) <= 1.0
  assert re.search(r"first 4 frames</td><td>[0-9.]+%", page)
  assert re.search(r"spectral centroids</td><td>[0-9.]+ octaves", page)


def test_written_shares_follow_the_kept_events_at_their_gains():
  # A window of input 4 everywhere; step 0 keeps an event of 1, step 1 none (dropped by the
  # refit), step 2 one of 5 (an overshoot): residual L1 shares 1, 3/4, 3/4, |4 - 6| / 4 = 1/2.
  from sparse_jax.codec import encode
  spec = np.full((3, 8), 4.0)
  events = np.stack([np.full((3, 8), 1.0), np.full((3, 8), 5.0)])
  trace = encode.WindowTrace(w=0, start=0, spec_in_FxN=spec, residual_FxN=spec - events.sum(0),
                             event_specs_KxFxN=events, steps_K=np.array([0, 2]))
  np.testing.assert_allclose(report.written_shares(trace, half=4), [1, 0.75, 0.75, 0.5])
  silent = encode.WindowTrace(w=1, start=0, spec_in_FxN=np.zeros((3, 8)),
                              residual_FxN=np.zeros((3, 8)), event_specs_KxFxN=np.zeros((0, 3, 8)),
                              steps_K=np.zeros(0, np.int64))
  np.testing.assert_array_equal(report.written_shares(silent, half=4), [0.0])
