"""Matching pursuit over a multi-scale Gabor dictionary: the classical sparse-audio baseline.

Our codec spends 32 events per 2^16 samples (about 10.8 per second at 22050 Hz).  This module
spends the same number of classical atoms, chosen greedily, and codes them into a real bitstream,
so the comparison is "learned events vs. hand-made atoms at equal count (or equal bitrate)".

Dictionary.  For each scale N (a power of two, e.g. 256, 1024, 4096 samples) there is a frame every
hop = N/4 samples, centred at m * hop (m = 0, 1, ..., so frame 0 is centred on the first sample),
and for each frequency bin k in [0, N/2) a two-dimensional subspace spanned by

    c[n] = w[n - tau] cos(2 pi k (n - tau) / N),    s[n] = w[n - tau] sin(2 pi k (n - tau) / N),

with w the periodic Hann window of N and tau = m * hop - N/2 the frame start; atoms are cut to the
signal [0, T).  Every unit vector of such a subspace is an L2-normalised Hann-windowed cosine of
frequency k / N cycles per sample with some phase, so the dictionary holds all phases at once.

Greedy step (exact matching pursuit on that dictionary).  The best atom of a subspace is the
normalised projection of the residual r onto it; it removes ||P r||^2 = b^T G^-1 b of energy, with
b = (<r, c>, <r, s>) and G the 2x2 Gram matrix of (c, s).  b comes from an FFT of the windowed
residual frame (b_c = Re X_k, b_s = -Im X_k), and G depends only on (N, k) except for the few frames
cut by the signal's ends, whose Gram matrices are precomputed.  Each step picks the subspace with the
largest ||P r||^2 over all scales, frames and bins, subtracts P r, and recomputes only the frames
(at every scale) that overlap the atom just subtracted; a per-frame maximum keeps the search over
frames, not over all coefficients.  Bins where c and s are (nearly) collinear, such as k = 0, use
the one-dimensional projection instead.

Atoms are stored as (scale N, time = frame centre in samples, freq_bin k, amplitude A, phase phi)
and rendered as A * w[n - tau] * cos(2 pi k (n - tau) / N + phi) on [0, T).

Bitstream (`encode_atoms` / `decode_atoms`): atoms sorted by time; per atom a 2-bit scale index,
the time step since the previous atom in units of the smallest hop (Exp-Golomb, order chosen per
file), the bin in log2(N/2) bits, the amplitude in 8 bits (log scale, 0.375 dB steps over 96 dB below
the loudest atom) and the phase in 6 bits.  `mp_codec` decodes from these quantised atoms.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from sparse_jax.baselines import CodecResult

# Our codec's event rate at 22050 Hz: 32 events per 2^16 samples.
CODEC_EVENTS_PER_SECOND = 32 * 22050 / 2**16

ATOM_DTYPE = np.dtype([("scale", np.int32), ("time", np.int64), ("freq_bin", np.int32),
                       ("amplitude", np.float64), ("phase", np.float64)])

# Below this relative determinant the (cos, sin) pair is treated as one direction: it only happens
# at k = 0 (sin is zero) or for frames cut down to a few samples at the signal's ends.
_RANK_TOL = 1e-9
# Frames scored per FFT call in the initial pass (bounds the temporary (frames, N) array).
_CHUNK_SAMPLES = 1 << 22

# Bitstream field widths.
_AMP_BITS, _PHASE_BITS, _SCALE_BITS = 8, 6, 2
_AMP_RANGE_DB = 96.0


@dataclasses.dataclass(frozen=True)
class MPResult:
  """What `matching_pursuit` found.

  Attributes:
    atoms: (n,) structured array of ATOM_DTYPE, in the order they were chosen.
    recon_T: (T,) the sum of the atoms.
    residual_energy: (n + 1,) ||x - sum of the first i atoms||^2 for i = 0..n (non-increasing).
  """
  atoms: np.ndarray
  recon_T: np.ndarray
  residual_energy: np.ndarray


def _hann(n: int) -> np.ndarray:
  return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _check_scales(scales) -> tuple[int, ...]:
  scales = tuple(int(s) for s in scales)
  if not scales or len(scales) > 2**_SCALE_BITS:
    raise ValueError(f"need 1 to {2**_SCALE_BITS} scales, got {scales}")
  for s in scales:
    if s < 4 or s & (s - 1):
      raise ValueError(f"scales must be powers of two >= 4, got {scales}")
  if len(set(scales)) != len(scales):
    raise ValueError(f"scales must be distinct, got {scales}")
  return scales


class _Scale:
  """One scale's frame grid, window, Gram matrices and per-frame best score."""

  def __init__(self, n: int, length: int, pad: int):
    self.n, self.hop, self.k = n, n // 4, n // 2
    self.window = _hann(n)
    self.n_frames = (length - 1) // self.hop + 1
    # Frame m reads buffer[start(m) : start(m) + n]; the buffer holds the signal at offset `pad`.
    self.offset = pad - n // 2
    self.arange = np.arange(n)
    self.best = np.zeros(self.n_frames)
    self.best_bin = np.zeros(self.n_frames, dtype=np.int64)
    self.gram = self._gram(self.window)
    # Frames that stick out of [0, length) (the first two, and the last few) see a cut window,
    # hence their own Gram matrices.
    first_inside = -(-(n // 2) // self.hop)
    last_inside = (length - n // 2) // self.hop  # Frames with m * hop + n/2 <= length.
    cut = set(range(min(first_inside, self.n_frames))) | set(
        range(max(0, last_inside + 1), self.n_frames))
    self.cut_gram = {}
    for m in sorted(cut):
      sample_N = m * self.hop - n // 2 + self.arange
      self.cut_gram[m] = self._gram(self.window * ((sample_N >= 0) & (sample_N < length)))

  def _gram(self, window_N: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """<c, c>, <s, s>, <c, s> for bins 0..K-1, from the DFT of the squared window.

    cos^2 = (1 + cos 2t) / 2, sin^2 = (1 - cos 2t) / 2, cos sin = sin(2t) / 2, so all three are
    read off the DFT of w^2 at bin 2k.
    """
    w2_spec = np.fft.fft(window_N**2)
    total, at_2k = w2_spec[0].real, w2_spec[2 * np.arange(self.k)]
    return (total + at_2k.real) / 2.0, (total - at_2k.real) / 2.0, -at_2k.imag / 2.0

  def frame_grams(self, frames_F: np.ndarray):
    """(cc, ss, cs), each broadcastable to (F, K)."""
    cut = [i for i, m in enumerate(frames_F) if int(m) in self.cut_gram]
    if not cut:
      return self.gram
    grams = [np.tile(g, (len(frames_F), 1)) for g in self.gram]
    for i in cut:
      for g_FxK, g_cut in zip(grams, self.cut_gram[int(frames_F[i])]):
        g_FxK[i] = g_cut
    return grams

  def coefficients(self, buffer: np.ndarray, frames_F: np.ndarray):
    """Inner products (b_c, b_s), each (F, K), of the residual with each frame's (c, s) pairs."""
    starts_F = self.offset + frames_F * self.hop
    segments_FxN = buffer[starts_F[:, None] + self.arange[None, :]] * self.window
    spec_FxK = np.fft.rfft(segments_FxN, axis=1)[:, :self.k]
    return spec_FxK.real, -spec_FxK.imag

  def update(self, buffer: np.ndarray, frames_F: np.ndarray) -> None:
    """Recompute the best (score, bin) of the given frames."""
    b_c, b_s = self.coefficients(buffer, frames_F)
    score_FxK = _projection_energy(b_c, b_s, *self.frame_grams(frames_F))
    best_bin = np.argmax(score_FxK, axis=1)
    self.best_bin[frames_F] = best_bin
    self.best[frames_F] = score_FxK[np.arange(frames_F.size), best_bin]

  def frames_touching(self, lo: int, hi: int) -> np.ndarray:
    """Frames whose support overlaps buffer[lo:hi]."""
    first = max(0, (lo - self.offset - self.n) // self.hop + 1)
    last = min(self.n_frames, -(-(hi - self.offset) // self.hop))
    return np.arange(first, last)


def _full_rank(cc, ss, cs):
  det = cc * ss - cs * cs
  return det, det > _RANK_TOL * cc * ss


def _projection_energy(b_c, b_s, cc, ss, cs) -> np.ndarray:
  """||P r||^2 = b^T G^-1 b per subspace; the 1-D projection where G is (nearly) singular."""
  det, full = _full_rank(cc, ss, cs)
  with np.errstate(divide="ignore", invalid="ignore"):
    two_d = (ss * b_c**2 - 2.0 * cs * b_c * b_s + cc * b_s**2) / det
    one_d = np.where(cc >= ss, b_c**2 / cc, b_s**2 / ss)
  return np.nan_to_num(np.where(full, two_d, one_d), nan=0.0, posinf=0.0)


def _solve(b_c: float, b_s: float, cc: float, ss: float, cs: float) -> tuple[float, float]:
  """Coefficients (a_c, a_s) of the projection P r = a_c c + a_s s."""
  det, full = _full_rank(cc, ss, cs)
  if full:
    return (ss * b_c - cs * b_s) / det, (cc * b_s - cs * b_c) / det
  if cc >= ss:
    return (b_c / cc if cc > 0 else 0.0), 0.0
  return 0.0, (b_s / ss if ss > 0 else 0.0)


def matching_pursuit(audio_T, n_atoms: int, scales=(256, 1024, 4096)) -> MPResult:
  """Greedy matching pursuit of `n_atoms` Gabor atoms (see the module docstring).

  Args:
    audio_T: (T,) signal.
    n_atoms: number of atoms to pick (fewer if the residual becomes exactly zero).
    scales: window sizes in samples, powers of two; at most four (the bitstream's 2-bit field).

  Returns:
    MPResult with the atoms in the order chosen, their sum, and the residual energy per step.
  """
  x_T = np.asarray(audio_T, dtype=np.float64)
  if x_T.ndim != 1 or x_T.size == 0:
    raise ValueError(f"audio_T must be a non-empty 1-D signal, got shape {x_T.shape}")
  if not np.all(np.isfinite(x_T)):
    raise ValueError("audio_T contains NaN or inf")
  if n_atoms < 0:
    raise ValueError(f"n_atoms must be >= 0, got {n_atoms}")
  scales = _check_scales(scales)
  length = x_T.size
  pad = max(scales)
  # The residual, zero-padded so that cut frames read zeros outside the signal.
  buffer = np.zeros(length + 2 * pad)
  buffer[pad:pad + length] = x_T
  grid = [_Scale(n, length, pad) for n in scales]
  for g in grid:
    step = max(1, _CHUNK_SAMPLES // g.n)
    for first in range(0, g.n_frames, step):
      g.update(buffer, np.arange(first, min(g.n_frames, first + step)))

  atoms = np.zeros(n_atoms, dtype=ATOM_DTYPE)
  energy = [float(np.dot(x_T, x_T))]
  for i in range(n_atoms):
    frame_per_scale = [int(np.argmax(g.best)) for g in grid]
    s = int(np.argmax([g.best[m] for g, m in zip(grid, frame_per_scale)]))
    g, m = grid[s], frame_per_scale[s]
    if g.best[m] <= 0.0:  # Nothing left to explain.
      atoms = atoms[:i]
      break
    k = int(g.best_bin[m])
    frames = np.array([m])
    b_c, b_s = (v[0, k] for v in g.coefficients(buffer, frames))
    cc, ss, cs = (np.broadcast_to(v, (1, g.k))[0, k] for v in g.frame_grams(frames))
    a_c, a_s = _solve(b_c, b_s, cc, ss, cs)
    lo = g.offset + m * g.hop
    theta_N = 2.0 * np.pi * k * g.arange / g.n
    atom_N = g.window * (a_c * np.cos(theta_N) + a_s * np.sin(theta_N))
    # Keep the padding zero: the atom is cut to the signal.
    sample_N = lo - pad + g.arange
    atom_N *= (sample_N >= 0) & (sample_N < length)
    segment = buffer[lo:lo + g.n]
    before = float(np.dot(segment, segment))
    segment -= atom_N
    energy.append(max(0.0, energy[-1] - before + float(np.dot(segment, segment))))
    # a_c cos + a_s sin = A cos(theta + phi) with A cos(phi) = a_c, A sin(phi) = -a_s.
    atoms[i] = (g.n, m * g.hop, k, math.hypot(a_c, a_s), math.atan2(-a_s, a_c))
    for other in grid:
      other.update(buffer, other.frames_touching(lo, lo + g.n))

  recon_T = x_T - buffer[pad:pad + length]
  return MPResult(atoms=atoms, recon_T=recon_T, residual_energy=np.array(energy))


def render_atoms(atoms: np.ndarray, length: int) -> np.ndarray:
  """Sum of atoms A * w[n - tau] * cos(2 pi k (n - tau) / N + phi), tau = time - N/2, on [0, length).

  Args:
    atoms: (n,) structured array of ATOM_DTYPE.
    length: output length in samples.

  Returns:
    (length,) float64.
  """
  out_T = np.zeros(length)
  for atom in atoms:
    n, k = int(atom["scale"]), int(atom["freq_bin"])
    start = int(atom["time"]) - n // 2
    idx_N = np.arange(n)
    wave_N = atom["amplitude"] * _hann(n) * np.cos(2.0 * np.pi * k * idx_N / n + atom["phase"])
    keep = (start + idx_N >= 0) & (start + idx_N < length)
    out_T[start + idx_N[keep]] += wave_N[keep]
  return out_T


def partial_reconstructions(atoms: np.ndarray, length: int, counts) -> np.ndarray:
  """Reconstructions from the first c atoms (in the order chosen), for each c in counts.

  Feed these to `metrics.spectral_energy_curve` to get MP's energy-removal curve, comparable with
  the codec's per-event curve.

  Args:
    atoms: (n,) structured array in selection order (as `MPResult.atoms`).
    length: signal length in samples.
    counts: (K,) increasing atom counts, each in [0, n].

  Returns:
    (K, length) float64.
  """
  counts = [int(c) for c in counts]
  if any(b < a for a, b in zip(counts, counts[1:])) or (counts and not 0 <= counts[0]) or (
      counts and counts[-1] > atoms.size):
    raise ValueError(f"counts must be increasing and within [0, {atoms.size}], got {counts}")
  out_KxT = np.zeros((len(counts), length))
  running_T, done = np.zeros(length), 0
  for i, c in enumerate(counts):
    running_T = running_T + render_atoms(atoms[done:c], length)
    done = c
    out_KxT[i] = running_T
  return out_KxT


# ------------------------------------------------------------------------------------------------
# Bitstream.


class _BitWriter:

  def __init__(self):
    self.bits: list[int] = []

  def write(self, value: int, width: int) -> None:
    if not 0 <= value < (1 << width):
      raise ValueError(f"{value} does not fit in {width} bits")
    self.bits.extend((value >> (width - 1 - j)) & 1 for j in range(width))

  def write_exp_golomb(self, value: int, order: int) -> None:
    shifted = value + (1 << order)
    width = shifted.bit_length()
    self.bits.extend([0] * (width - 1 - order))
    self.write(shifted, width)

  def to_bytes(self) -> bytes:
    padded = self.bits + [0] * (-len(self.bits) % 8)
    return np.packbits(np.array(padded, dtype=np.uint8)).tobytes()


class _BitReader:

  def __init__(self, data: bytes):
    self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    self.pos = 0

  def read(self, width: int) -> int:
    if self.pos + width > self.bits.size:
      raise ValueError("truncated matching-pursuit bitstream")
    value = 0
    for bit in self.bits[self.pos:self.pos + width]:
      value = (value << 1) | int(bit)
    self.pos += width
    return value

  def read_exp_golomb(self, order: int) -> int:
    zeros = 0
    while self.read(1) == 0:
      zeros += 1
    rest = self.read(zeros + order)
    return ((1 << (zeros + order)) | rest) - (1 << order)


# Header: length (32), atom count (32), loudest amplitude (float32), scale count - 1 (2),
# log2 of each scale (5 each), Exp-Golomb order of the time steps (5).
def header_bits(n_scales: int) -> int:
  """Size of the bitstream header in bits."""
  return 32 + 32 + 32 + _SCALE_BITS + 5 * n_scales + 5


def _time_unit(scales) -> int:
  return math.gcd(*[n // 4 for n in scales])


def _golomb_order(steps: np.ndarray) -> int:
  """Exp-Golomb order that minimises the total length of the time steps."""
  def total(order):
    return int(np.sum(2 * np.floor(np.log2(steps + (1 << order))) - order + 1))
  return min(range(20), key=total) if steps.size else 0


def encode_atoms(atoms: np.ndarray, length: int, scales=(256, 1024, 4096)) -> bytes:
  """Quantise atoms and pack them into bytes (see the module docstring for the layout).

  Args:
    atoms: (n,) structured array of ATOM_DTYPE whose scales are in `scales`.
    length: signal length in samples.
    scales: the dictionary's scales (written to the header).

  Returns:
    The bitstream.
  """
  scales = _check_scales(scales)
  unit = _time_unit(scales)
  order_idx = np.lexsort((atoms["freq_bin"], atoms["scale"], atoms["time"]))
  atoms = atoms[order_idx]
  times = atoms["time"].astype(np.int64)
  if np.any(times % unit) or np.any(times < 0):
    raise ValueError(f"atom times must be non-negative multiples of {unit}")
  steps = np.diff(times // unit, prepend=0)
  amp_max = np.float32(atoms["amplitude"].max()) if atoms.size else np.float32(0.0)
  order = _golomb_order(steps)

  w = _BitWriter()
  w.write(length, 32)
  w.write(atoms.size, 32)
  w.write(int(np.array(amp_max, dtype=np.float32).view(np.uint32)), 32)
  w.write(len(scales) - 1, _SCALE_BITS)
  for n in scales:
    w.write(n.bit_length() - 1, 5)
  w.write(order, 5)
  amp_levels = (1 << _AMP_BITS) - 1
  for atom, step in zip(atoms, steps):
    n = int(atom["scale"])
    w.write(scales.index(n), _SCALE_BITS)
    w.write_exp_golomb(int(step), order)
    w.write(int(atom["freq_bin"]), (n // 2).bit_length() - 1)
    rel_db = 20.0 * np.log10(max(float(atom["amplitude"]), 1e-30) / float(amp_max))
    w.write(int(np.clip(np.round((rel_db + _AMP_RANGE_DB) / _AMP_RANGE_DB * amp_levels), 0,
                        amp_levels)), _AMP_BITS)
    w.write(int(np.round(atom["phase"] / (2 * np.pi) * (1 << _PHASE_BITS))) % (1 << _PHASE_BITS),
            _PHASE_BITS)
  return w.to_bytes()


def decode_atoms(data: bytes) -> tuple[np.ndarray, int]:
  """Inverse of `encode_atoms`: dequantised atoms (sorted by time) and the signal length."""
  r = _BitReader(data)
  length, n_atoms = r.read(32), r.read(32)
  amp_max = float(np.array(r.read(32), dtype=np.uint32).view(np.float32))
  scales = tuple(1 << r.read(5) for _ in range(r.read(_SCALE_BITS) + 1))
  order = r.read(5)
  unit = _time_unit(scales)
  amp_levels = (1 << _AMP_BITS) - 1
  atoms = np.zeros(n_atoms, dtype=ATOM_DTYPE)
  slot = 0
  for i in range(n_atoms):
    n = scales[r.read(_SCALE_BITS)]
    slot += r.read_exp_golomb(order)
    k = r.read((n // 2).bit_length() - 1)
    rel_db = r.read(_AMP_BITS) / amp_levels * _AMP_RANGE_DB - _AMP_RANGE_DB
    phase = r.read(_PHASE_BITS) * 2.0 * np.pi / (1 << _PHASE_BITS)
    atoms[i] = (n, slot * unit, k, amp_max * 10.0**(rel_db / 20.0), phase)
  return atoms, length


def mp_codec(audio_T, sample_rate: int, atoms_per_second: float = CODEC_EVENTS_PER_SECOND,
             scales=(256, 1024, 4096)) -> CodecResult:
  """Matching pursuit as a codec: pick atoms, quantise and pack them, decode from the bytes.

  The atom budget is round(atoms_per_second * duration) for the whole signal (MP spends it where the
  energy is, which a real codec could do too).

  Args:
    audio_T: (T,) signal.
    sample_rate: its rate in Hz.
    atoms_per_second: atom rate; the default matches our codec's event rate at 22050 Hz.
    scales: dictionary scales.

  Returns:
    CodecResult: decoded_T from the quantised atoms, kbps of the atom payload (header excluded, as
    for the other codecs), file_kbps of the whole bitstream.
  """
  x_T = np.asarray(audio_T, dtype=np.float64)
  seconds = x_T.size / sample_rate
  n_atoms = int(round(atoms_per_second * seconds))
  result = matching_pursuit(x_T, n_atoms, scales)
  data = encode_atoms(result.atoms, x_T.size, scales)
  atoms, length = decode_atoms(data)
  payload_bits = len(data) * 8 - header_bits(len(scales))
  return CodecResult(decoded_T=render_atoms(atoms, length),
                     kbps=payload_bits / seconds / 1000.0,
                     name=f"mp-{atoms_per_second:.3g}aps",
                     file_kbps=len(data) * 8 / seconds / 1000.0)
