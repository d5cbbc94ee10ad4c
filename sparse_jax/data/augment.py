"""Training-time augmentation: windows that sound like the real world, not one clean render.

Real recordings differ from the embedded renders in room, tone, dynamics, noise and density.
Each training window, with the probabilities of `CHAIN`, is mixed with a second window, run
through Spotify's `pedalboard` (equalisation, compression, Freeverb room), and given a noise
floor.  Every draw comes from numpy's generator seeded by (seed, step, row), so a batch is a pure
function of the step and a resumed or multi-host run sees exactly the same audio.

    rng = np.random.default_rng([seed, step, ROW_STREAM, row])
    audio_T = augment_window(audio_T, other_T, rng, sample_rate)
"""
import numpy as np

# Stream tag of the augmentation draws: keeps them apart from the sampler's [seed, step] draws.
ROW_STREAM = 0xA6

# Probability of each stage; the parameter ranges are in `augment_window`.
CHAIN = {
    'mix': 0.3,        # add a second window 0-12 dB below the first: denser, overlapping events
    'polarity': 0.5,   # flip the sign (windows are divided by their *positive* peak)
    'eq': 0.6,         # low shelf, peak and high shelf, +-9 dB each
    'dynamics': 0.3,   # a compressor after a level change of -12..+6 dB
    'room': 0.4,       # Freeverb: room size 0.1-0.9, wet 0.05-0.4
    'noise': 0.3,      # white or pink noise 25-60 dB below the signal's RMS
}


def _peak_normalise(x_T: np.ndarray) -> np.ndarray:
  return x_T / (np.max(np.abs(x_T)) + 1e-12)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
  """Noise with a 1/f power spectrum (white noise shaped in the frequency domain)."""
  spec = np.fft.rfft(rng.standard_normal(n))
  spec[1:] /= np.sqrt(np.arange(1, spec.size))
  spec[0] = 0.0
  return np.fft.irfft(spec, n)


def augment_window(audio_T: np.ndarray, other_T: np.ndarray, rng: np.random.Generator,
                   sample_rate: int) -> np.ndarray:
  """One augmented training window (float32, same length); the sampler normalises it after.

  Args:
    audio_T: the window, any level.
    other_T: a second window of the same length (from another random file), for mixing.
    rng: the row's generator; every stage draws from it whether or not it applies, so the
      parameters of one stage never depend on another's coin.
    sample_rate: in Hz.
  """
  import pedalboard  # only augmented runs need it
  n = audio_T.shape[0]
  coin = {name: rng.random() < p for name, p in CHAIN.items()}
  u = rng.random(16)  # every continuous parameter, drawn once

  x_T = _peak_normalise(np.asarray(audio_T, np.float64))
  if coin['mix']:
    x_T = x_T + _peak_normalise(np.asarray(other_T, np.float64)) * 10**(-12 * u[0] / 20)
  if coin['polarity']:
    x_T = -x_T
  effects: list = []  # pedalboard Plugins
  if coin['eq']:
    effects += [
        pedalboard.LowShelfFilter(cutoff_frequency_hz=80 + 320 * u[1], gain_db=18 * u[2] - 9),
        pedalboard.PeakFilter(cutoff_frequency_hz=float(300 * 2**(4 * u[3])),
                              gain_db=18 * u[4] - 9, q=0.5 + 2 * u[5]),
        pedalboard.HighShelfFilter(cutoff_frequency_hz=2000 + 6000 * u[6], gain_db=18 * u[7] - 9)]
  if coin['dynamics']:
    effects += [pedalboard.Gain(gain_db=18 * u[8] - 12),
                pedalboard.Compressor(threshold_db=-30 + 20 * u[9], ratio=2 + 6 * u[10],
                                      attack_ms=1 + 20 * u[11], release_ms=50 + 200 * u[11])]
  if coin['room']:
    effects += [pedalboard.Reverb(room_size=0.1 + 0.8 * u[12], damping=0.5,
                                  wet_level=0.05 + 0.35 * u[13], dry_level=1.0, width=0.0)]
  if effects:
    x_T = pedalboard.Pedalboard(effects)(x_T.astype(np.float32)[None], sample_rate,
                                         reset=True)[0].astype(np.float64)
  if coin['noise']:
    noise_T = _pink(rng, n) if u[14] < 0.5 else rng.standard_normal(n)
    rms = np.sqrt(np.mean(x_T**2)) + 1e-12
    noise_rms = np.sqrt(np.mean(noise_T**2)) + 1e-12
    x_T = x_T + noise_T * (rms / noise_rms) * 10**(-(25 + 35 * u[15]) / 20)
  return x_T.astype(np.float32)
