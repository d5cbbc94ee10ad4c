"""The fixed bank of room impulse responses used by the decoder's room block.

The paper mixes about 40 recorded impulse responses of the Voxengo IR pack.  Nothing may be
downloaded here, so the bank is synthesised, deterministically from a seed, with the physics that
matters for a reverb: a direct path, sparse early reflections from a first- and second-order image-
source model of a shoebox room, and a dense late tail of noise whose decay time depends on
frequency (air and wall absorption make highs die faster).  Rooms range from a small booth
(RT60 0.15 s) to a large hall (RT60 3 s).  Like the paper's bank, each response is cut or padded
to the window length and divided by its positive peak, and it is a constant: never trained.
"""
import functools

import numpy as np

SPEED_OF_SOUND = 343.0  # m/s

# Octave-band centres (Hz) and each band's RT60 relative to the room's nominal RT60.
_BAND_EDGES = np.array([0.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, np.inf])
_BAND_RT_SCALE = np.array([1.2, 1.1, 1.0, 0.85, 0.65, 0.45])


def _shoebox_reflections(dims, source, listener, absorption, max_order=2):
  """Image-source delays (s) and amplitudes of a shoebox room, up to `max_order` per axis."""
  delays, gains = [], []
  orders = range(-max_order, max_order + 1)
  for nx in orders:
    for ny in orders:
      for nz in orders:
        image = []
        for n, size, src in zip((nx, ny, nz), dims, source):
          # An even image index keeps the source side, an odd one mirrors it.
          image.append(n * size + (src if n % 2 == 0 else size - src))
        dist = float(np.linalg.norm(np.array(image) - np.array(listener)))
        bounces = abs(nx) + abs(ny) + abs(nz)
        delays.append(dist / SPEED_OF_SOUND)
        gains.append((1.0 - absorption) ** bounces / max(dist, 0.1))
  return np.array(delays), np.array(gains)


def _room_parameters(n_rooms: int, rng: np.random.Generator):
  """Room sizes and decay times, spread from small to large (log-spaced RT60)."""
  rt60 = np.geomspace(0.15, 3.0, n_rooms)
  rng.shuffle(rt60)
  params = []
  for rt in rt60:
    scale = 2.0 + 10.0 * (rt - 0.15) / 2.85  # bigger rooms ring longer
    dims = scale * rng.uniform([1.0, 0.8, 0.4], [1.6, 1.3, 0.7])
    source = dims * rng.uniform(0.2, 0.8, size=3)
    listener = dims * rng.uniform(0.2, 0.8, size=3)
    absorption = float(np.clip(0.161 * np.prod(dims) / (rt * 2 * (
        dims[0] * dims[1] + dims[1] * dims[2] + dims[0] * dims[2])), 0.05, 0.95))
    params.append((float(rt), dims, source, listener, absorption))
  return params


def room_impulse_responses(n_rooms: int, n_samples: int, sample_rate: int,
                           seed: int = 0) -> np.ndarray:
  """Deterministic synthetic room impulse responses.

  Args:
    n_rooms: number of rooms in the bank.
    n_samples: length of each response (the model's window).
    sample_rate: in Hz.
    seed: the bank is a pure function of its arguments.

  Returns:
    float32 (n_rooms, n_samples), each divided by its positive peak.
  """
  rng = np.random.default_rng(seed)
  t = np.arange(n_samples) / sample_rate
  freqs = np.fft.rfftfreq(n_samples, 1.0 / sample_rate)
  band_of_bin = np.clip(np.searchsorted(_BAND_EDGES, freqs, side="right") - 1, 0, 5)
  bank = np.zeros((n_rooms, n_samples), np.float64)
  for i, (rt, dims, source, listener, absorption) in enumerate(_room_parameters(n_rooms, rng)):
    delays, gains = _shoebox_reflections(dims, source, listener, absorption)
    first = delays.min()
    taps = np.round((delays - first) * sample_rate).astype(int)
    keep = taps < n_samples
    early = np.zeros(n_samples)
    np.add.at(early, taps[keep], gains[keep] / gains.max())
    # Late tail: per-band exponential decay of white noise, 60 dB over each band's RT60.
    # It starts after the mixing time, when reflections become too dense to tell apart.
    noise_spec = np.fft.rfft(rng.standard_normal(n_samples))
    tail = np.zeros(n_samples)
    for band in range(6):
      band_noise = np.fft.irfft(np.where(band_of_bin == band, noise_spec, 0), n=n_samples)
      decay = np.exp(-6.91 * t / (rt * _BAND_RT_SCALE[band]))
      tail += band_noise * decay
    mixing_time = min(0.08, 0.3 * rt)
    onset = 1.0 - np.exp(-np.maximum(t - 0.005, 0.0) / (0.25 * mixing_time))
    tail *= onset * 0.2 * np.sqrt(rt) / (np.abs(tail).max() + 1e-12)
    response = early + tail
    bank[i] = response / (abs(response.max()) + 1e-12)
  return bank.astype(np.float32)


@functools.lru_cache(maxsize=4)
def room_bank_spectra(n_rooms: int, n_samples: int, sample_rate: int, seed: int) -> np.ndarray:
  """rfft at 2T of the bank (complex64, (R, T + 1)): what the decoder multiplies by.

  Cached: the bank is a pure function of its arguments and takes a second or two to build.
  """
  bank = room_impulse_responses(n_rooms, n_samples, sample_rate, seed)
  spectra = np.fft.rfft(bank.astype(np.float64), n=2 * n_samples).astype(np.complex64)
  spectra.setflags(write=False)
  return spectra
