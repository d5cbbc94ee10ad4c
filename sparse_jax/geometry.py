"""The model's sizes, derived once from its config: how many bins, frames, which half.

    geo = Geometry.of(cfg.model)
    geo.n_bins     # F = window // 2 + 1, the STFT's bins
    geo.n_frames   # N = n_samples // hop, the frames of a window
    geo.half       # N // 2: events start in the first half of a window's frames

Shape letters, written once for the whole package (names carry them as suffixes: `spec_BxFxN`,
`vectors_BxExD`; a digit is a literal size, `_WxS1` is S + 1):

  the model     B batch, T samples (of a window, or of a whole signal), F STFT bins, N STFT
                frames, H the first half's frames, G an STFT frame's samples, E events (a
                window's removal steps, or any set of events), D event dimensions,
                C rows mixed per event (expressivity), J a table's rows, R rooms, Q rfft bins of
                a 2T transform, I envelope spikes (impulses), P envelope points, A attack
                samples, L noise-filter taps, M MLP width, U upsampling factor, Y mel bands
  the codec     W windows of a stream, K the events one window keeps, S removal steps (S1: with
                the input before them), V STFT resolutions of the decoded-error check, Z
                candidate scales of that check
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class Geometry:
  """The sizes every block, the encoder and the codec share, derived from the model config (a
  block's own sizes are its settings, `blocks.py`)."""
  n_samples: int
  window: int
  hop: int
  sample_rate: int = 22050

  @classmethod
  def of(cls, cfg) -> "Geometry":
    """From a model config (a ConfigDict or any object with its fields)."""
    return cls(int(cfg.n_samples), int(cfg.window), int(cfg.hop), int(cfg.sample_rate))

  @property
  def n_frames(self) -> int:
    return self.n_samples // self.hop

  @property
  def half(self) -> int:
    return self.n_frames // 2

  @property
  def n_bins(self) -> int:
    return self.window // 2 + 1
