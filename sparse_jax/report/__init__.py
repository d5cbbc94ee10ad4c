"""The HTML report of one encoding (a consumer of the codec layer).

  assemble.py   `write_report`: encode, write the audio, assemble the folder
  timeline.py   the clickable event timeline (t-SNE, colours, SVG)
  figures.py    the PNG figures (residual spectrograms, vectors, energy per step)
  page.py       the HTML page
"""
