"""The report's HTML page: a summary table, the players, the timeline, the figures.  One file
with inline CSS and a few lines of vanilla JS (no server, no external URLs or libraries).
"""
import html

PAGE_WIDTH_PX = 860


# Fits a 900 px laptop window: nothing is wider than the page, and the page shrinks with it.
_STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 16px auto; padding: 0 12px; max-width: %dpx;
       color: #222; line-height: 1.35; }
h1 { font-size: 1.45em; } h2 { font-size: 1.12em; margin-top: 1.5em; border-bottom: 1px solid #ccc; }
table.summary { border-collapse: collapse; font-size: 0.92em; }
table.summary td { padding: 2px 14px 2px 0; vertical-align: top; overflow-wrap: anywhere; }
table.summary td:first-child { color: #666; }
.players { display: grid; grid-template-columns: minmax(0, 17em) minmax(0, 1fr); gap: 6px 14px;
           align-items: center; }
audio { width: 100%%; }
img, svg { display: block; max-width: 100%%; height: auto; border: 1px solid #ddd; }
svg circle[data-start] { cursor: pointer; }
svg circle { stroke: #222; stroke-width: 0.6; }
svg circle[data-start]:hover, svg circle.playing { stroke-width: 2.5; }
.note { color: #666; font-size: 0.9em; }
.tabs button { font: inherit; padding: 3px 12px; border: 1px solid #bbb; background: #f4f4f4;
               cursor: pointer; } .tabs button.on { background: #fff; border-bottom-color: #fff; }
.view { display: none; } .view.on { display: block; }
""" % (PAGE_WIDTH_PX + 24)  # noqa: UP031  (the CSS is full of braces: %-formatting)

# Clicking a point plays its clip out of the one sprite file and stops at the clip's end; the
# tabs show one timeline view at a time.
_SCRIPT = """
(function () {
  var tabs = document.querySelectorAll('.tabs button');
  tabs.forEach(function (b) {
    b.addEventListener('click', function () {
      tabs.forEach(function (o) { o.classList.toggle('on', o === b); });
      document.querySelectorAll('.view').forEach(function (v) {
        v.classList.toggle('on', v.id === b.getAttribute('data-view'));
      });
    });
  });
})();
(function () {
  var player = document.getElementById('event-player');
  var label = document.getElementById('event-label');
  var points = document.querySelectorAll('circle[data-start]');
  var end = null;
  function watch() {
    if (end === null) { return; }
    if (player.currentTime >= end || player.paused) { player.pause(); end = null; return; }
    requestAnimationFrame(watch);
  }
  points.forEach(function (c) {
    c.addEventListener('click', function () {
      points.forEach(function (o) { o.classList.remove('playing'); });
      c.classList.add('playing');
      var start = parseFloat(c.getAttribute('data-start'));
      end = parseFloat(c.getAttribute('data-end'));
      player.setAttribute('data-clip', c.getAttribute('data-start') + '-' + c.getAttribute('data-end'));
      label.textContent = c.getAttribute('data-label');
      player.currentTime = start;
      var playing = player.play();
      if (playing && playing.catch) { playing.catch(function () {}); }
      requestAnimationFrame(watch);
    });
  });
})();
"""


def page(summary_rows, notes, views, window_label, audio_files):
  """The page.  `views`: the timeline's tabs, [(title, what it shows, svg)], the first shown."""
  rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary_rows)
  players = "\n".join(
      f'<div>{html.escape(title)}</div><audio controls preload="none" src="{name}"></audio>'
      for name, title in audio_files)
  note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
  window_label = html.escape(window_label)
  tabs = "".join(f'<button class="{"on" if k == 0 else ""}" data-view="view{k}">'
                 f'{html.escape(title)}</button>' for k, (title, _, _) in enumerate(views))
  timeline = "\n".join(
      f'<div class="view{" on" if k == 0 else ""}" id="view{k}"><p class="note">'
      f'{html.escape(about)}</p>\n{svg}</div>' for k, (_, about, svg) in enumerate(views))
  return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sparse_jax codec report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Sparse audio codec: report</h1>
<table class="summary">
{rows}
</table>
{note_html}
<h2>Listen</h2>
<div class="players">
{players}
</div>
<h2>Event timeline</h2>
<div class="tabs">{tabs}</div>
{timeline}
<p><span id="event-label" class="note">no event selected</span><br>
<audio id="event-player" controls preload="none" src="events.mp3"></audio></p>
<h2>Residual after a few removal steps ({window_label})</h2>
<img src="residual_steps.png" alt="residual spectrogram at a few removal steps">
<h2>Energy removed per step</h2>
<img src="energy_removed.png" alt="energy removed after each removal step">
<h2>Event vectors ({window_label})</h2>
<img src="event_vectors.png" alt="event vectors of one window">
<script>{_SCRIPT}</script>
</body>
</html>
"""
