"""Known test signals made in code (no files, no downloads)."""
import numpy as np


def plucked_note(n_samples: int, sample_rate: int, *, f0: float = 220.0, onset: int = 0,
                 n_partials: int = 4, decay_s: float = 0.3, seed: int = 0) -> np.ndarray:
  """A few exponentially decaying harmonic partials after a short noise attack."""
  rng = np.random.default_rng(seed)
  t = np.arange(n_samples - onset) / sample_rate
  tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k
             for k in range(1, n_partials + 1))
  tone = tone * np.exp(-t / decay_s)
  attack_len = min(len(t), int(0.01 * sample_rate))
  tone[:attack_len] += rng.standard_normal(attack_len) * np.linspace(1, 0, attack_len)
  out = np.zeros(n_samples)
  out[onset:] = tone
  return (out / np.abs(out).max()).astype(np.float32)


def note_sequence(n_samples: int, sample_rate: int, n_notes: int = 3, seed: int = 0) -> np.ndarray:
  """Notes at spread onsets in the first half of the window, peak-normalised."""
  rng = np.random.default_rng(seed)
  audio = np.zeros(n_samples, np.float32)
  for i in range(n_notes):
    onset = int((i + 0.3) * (n_samples // 2) / n_notes)
    audio += plucked_note(n_samples, sample_rate, f0=float(rng.choice([196, 247, 294, 392])),
                          onset=onset, seed=seed + i)
  return audio / np.abs(audio).max()
