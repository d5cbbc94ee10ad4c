"""Event gains after the removal loop: fit them, drop events that hurt, and never make audio worse.

The removal loop picks each event's gain greedily, one event at a time, against a residual it
never sees again; nothing stops an event from adding more than it removes.  Matching pursuit cannot
do that (each coefficient is a projection), and the streaming encoder gets the same guarantee here,
in three steps per window:

  1. `fit_gains`: non-negative least squares of the window's target magnitude spectrogram (its
     first half, where the events were chosen) on the events' own magnitude spectrograms.
  2. `prune`: drop, one at a time, the event whose removal lowers the L1 residual most, while one
     does (L2 gains are not L1-optimal, and a few events only add energy).
  3. `SafeScale`: a listener hears the MIXED audio of the events, whose spectrogram is not the sum
     of theirs (phases interfere), so 1 and 2 prove nothing about the decoded file.  The window's
     whole contribution is therefore scaled by the alpha in [0, 1] that makes the decoded spectral
     L1 error smallest on every frame it touches, among the alphas that make it no larger at any
     of the checked STFT resolutions.  alpha = 0 (leave the window out) always qualifies, so adding
     a window never increases the decoded error.

All numpy, float64; shapes: K events, F bins, H first-half frames, N frames, T samples.  Products
are `np.einsum` (plain loops), not `@`: with JAX loaded on a busy 2-core CPU, a multi-threaded
OpenBLAS call of this size was measured at 1 s instead of 2 ms (its threads spin against XLA's).
"""
import dataclasses

import numpy as np
import scipy.optimize

from sparse_jax import metrics

# An alpha is kept only if it lowers the error by more than this fraction of it: the decoder renders
# each event at its gain in float32, the check multiplies unit-gain renders in float64, and a tie
# must not flip into a loss through that rounding (about 1e-7).
MIN_RELATIVE_GAIN = 1e-6
# The alpha search: a coarse grid over [0, 1], then a fine one around its best point.
_COARSE = np.linspace(0.0, 1.0, 21)
_FINE = np.linspace(-0.05, 0.05, 11)


def fit_gains(target_FxH: np.ndarray, specs_KxFxH: np.ndarray) -> np.ndarray:
  """argmin_{g >= 0} ||target - sum_k g_k spec_k||_2 (non-negative least squares).

  Solved on the K x K normal equations (a square root of the Gram matrix), not on the F*H rows:
  the same minimiser, at the cost of K x K whatever the window's size.

  Args:
    target_FxH: the window's target magnitudes (may hold negative values: a written-back residual).
    specs_KxFxH: each event's magnitude spectrogram at unit gain.

  Returns:
    gains_K >= 0, float64.
  """
  k = specs_KxFxH.shape[0]
  if k == 0:
    return np.zeros(0)
  a_KxJ = np.asarray(specs_KxFxH, np.float64).reshape(k, -1)  # no copy when already float64
  b_J = target_FxH.reshape(-1).astype(np.float64)
  gram_KxK = np.einsum("km,jm->kj", a_KxJ, a_KxJ)
  rhs_K = np.einsum("km,m->k", a_KxJ, b_J)
  # gram = V diag(w) V^T; with M = diag(sqrt w) V^T, ||M g - d||^2 = g^T gram g - 2 g^T rhs + c
  # for d = diag(1/sqrt w) V^T rhs, so NNLS on (M, d) minimises the original objective.  Directions
  # with w ~ 0 (duplicate or silent events) carry no information and are dropped.
  w_K, v_KxK = np.linalg.eigh(gram_KxK)
  keep = w_K > w_K.max(initial=0.0) * 1e-12
  if not keep.any():
    return np.zeros(k)
  root = np.sqrt(w_K[keep])
  m = root[:, None] * v_KxK[:, keep].T
  d = np.einsum("kj,k->j", v_KxK[:, keep], rhs_K) / root
  gains_K, _ = scipy.optimize.nnls(m, d, maxiter=50 * k)
  return np.maximum(gains_K, 0.0)


def prune(target_FxH: np.ndarray, specs_KxFxH: np.ndarray, gains_K: np.ndarray) -> np.ndarray:
  """Zeroes, one at a time, the gain whose removal lowers ||target - sum g_k spec_k||_1 most.

  Stops when no single removal lowers it: every kept event then pays for itself in L1.

  Returns:
    gains_K with the dropped events at 0 (a copy).
  """
  gains_K = np.asarray(gains_K, np.float64).copy()
  k = gains_K.size
  if k == 0:
    return gains_K
  a_KxJ = np.asarray(specs_KxFxH, np.float64).reshape(k, -1)
  residual_J = target_FxH.reshape(-1).astype(np.float64) - np.einsum("k,km->m", gains_K, a_KxJ)
  while True:
    live = np.flatnonzero(gains_K > 0)
    if live.size == 0:
      return gains_K
    now = np.abs(residual_J).sum()
    # The L1 change of adding each live event back into the residual (= dropping it).
    after_K = np.abs(residual_J[None] + gains_K[live, None] * a_KxJ[live]).sum(axis=1)
    best = int(np.argmin(after_K))
    if not after_K[best] < now:
      return gains_K
    j = live[best]
    residual_J += gains_K[j] * a_KxJ[j]
    gains_K[j] = 0.0


@dataclasses.dataclass
class _Resolution:
  """One STFT resolution's view of the frames a window's audio touches."""
  ref_FxN: np.ndarray       # |STFT| of the input on those frames
  decoded_FxN: np.ndarray   # complex STFT of what is decoded so far
  before: float             # the decoded L1 error there without this window


class SafeScale:
  """Decoded spectral L1 error of `decoded + alpha * contribution`, on the frames it changes.

  Built once per window from the input, the audio decoded so far and the window's contribution;
  the STFT is linear, so every alpha costs one magnitude, not one STFT.

  Args:
    reference_T: the input audio, zero-padded past its end (at least to `start + length`).
    decoded_T: the audio decoded so far (same length), by every earlier window.
    contribution_L: this window's events mixed at their gains, starting at sample `start`.
    start: the contribution's first sample.
    n_audio: the decoded file's length: later samples are cut off, frames past
      n_audio // hop do not exist (`metrics.stft_magnitude` of the whole file).
    resolutions: (window, hop) pairs of the STFTs to check; the first one is optimised.
  """

  def __init__(self, reference_T, decoded_T, contribution_L, start: int, n_audio: int,
               resolutions):
    self.resolutions = tuple(resolutions)
    self.start, self.length, self.n_audio = int(start), contribution_L.size, int(n_audio)
    self._spans: list = []
    self._views: list = []
    self._contrib: list = []
    for window, hop in self.resolutions:
      # Frame t reads samples [hop t, hop t + window): keep those that overlap the contribution.
      first = max(0, -(-(self.start - window + 1) // hop))
      last = min((self.start + self.length - 1) // hop, self.n_audio // hop - 1)
      if last < first:
        self._spans.append(None)
        self._views.append(None)
        self._contrib.append(None)
        continue
      span = (first * hop, last * hop + window, last - first + 1)
      lo, hi, n = span
      ref = np.abs(metrics.stft(_cut(reference_T, lo, hi, self.n_audio), window, hop)[:, :n])
      dec = metrics.stft(_cut(decoded_T, lo, hi, self.n_audio), window, hop)[:, :n]
      self._spans.append(span)
      self._views.append(_Resolution(ref, dec, float(np.abs(ref - np.abs(dec)).sum())))
      self._contrib.append(self._stft_of(contribution_L, len(self._spans) - 1))

  def _stft_of(self, contribution_L, r) -> np.ndarray:
    """Complex STFT, at resolution r, of a contribution placed at `start` (cut at n_audio)."""
    (window, hop), (lo, hi, n) = self.resolutions[r], self._spans[r]
    out_T = np.zeros(hi - lo)
    a, b = max(self.start, lo), min(self.start + self.length, hi, self.n_audio)
    if b > a:
      out_T[a - lo:b - lo] = contribution_L[a - self.start:b - self.start]
    return metrics.stft(out_T, window, hop)[:, :n]

  def errors(self, alphas_Z) -> np.ndarray:
    """(Z, V) decoded L1 error at each candidate scale alpha and resolution."""
    alphas_Z = np.asarray(alphas_Z, np.float64)
    out = np.zeros((alphas_Z.size, len(self.resolutions)))
    for r, (view, contrib) in enumerate(zip(self._views, self._contrib)):
      if view is None:
        continue
      for i, alpha in enumerate(alphas_Z):
        out[i, r] = np.abs(view.ref_FxN - np.abs(view.decoded_FxN + alpha * contrib)).sum()
    return out

  def errors_with(self, contribution_L) -> np.ndarray:
    """(V,) decoded L1 error with another contribution in place of this window's (alpha 1)."""
    out = np.zeros(len(self.resolutions))
    for r, view in enumerate(self._views):
      if view is not None:
        mixed = view.decoded_FxN + self._stft_of(np.asarray(contribution_L, np.float64), r)
        out[r] = np.abs(view.ref_FxN - np.abs(mixed)).sum()
    return out

  @property
  def before(self) -> np.ndarray:
    """(V,) the error without this window (alpha = 0)."""
    return np.array([0.0 if v is None else v.before for v in self._views])

  def acceptable(self, errors_ZxV) -> np.ndarray:
    """(A,) which rows lower the error by a margin at the first resolution and at every other
    resolution either lower it by that margin or leave it exactly as it was (untouched frames)."""
    before = self.before
    lower = errors_ZxV < before * (1.0 - MIN_RELATIVE_GAIN)
    return lower[:, 0] & np.all(lower | (errors_ZxV == before), axis=1)

  def best_alpha(self) -> float:
    """The acceptable alpha in [0, 1] with the smallest error at the first resolution, or 0."""
    alphas = _COARSE
    errors = self.errors(alphas)
    ok = self.acceptable(errors)
    if not ok.any():
      return 0.0
    centre = alphas[ok][np.argmin(errors[ok, 0])]
    fine = np.clip(centre + _FINE, 0.0, 1.0)
    alphas = np.concatenate([alphas, fine])
    errors = np.concatenate([errors, self.errors(fine)])
    ok = self.acceptable(errors)
    return float(alphas[ok][np.argmin(errors[ok, 0])])


def mix(gains_K, audio_KxT) -> np.ndarray:
  """sum_k gains_k audio_k, float64 (see the module docstring for why not `@`)."""
  return np.einsum("k,kt->t", np.asarray(gains_K, np.float64), audio_KxT)


def _cut(x_T: np.ndarray, lo: int, hi: int, n_audio: int) -> np.ndarray:
  """x_T[lo:hi] as float64, zero at and past sample n_audio (the decoded file ends there)."""
  out = np.zeros(hi - lo)
  end = min(hi, n_audio, x_T.size)
  if end > lo:
    out[:end - lo] = x_T[lo:end]
  return out
