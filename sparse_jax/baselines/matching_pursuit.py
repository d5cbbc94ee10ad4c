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
cut by the signal's ends, whose Gram matrices are precomputed.  Each step picks the subspace with
the largest ||P r||^2 over all scales, frames and bins, subtracts P r, and recomputes only the
frames (at every scale) that overlap the atom just subtracted; a per-frame maximum keeps the search
over frames, not over all coefficients.  Bins where c and s are (nearly) collinear, such as k = 0,
use the one-dimensional projection instead.

Atoms are stored as (scale N, time = frame centre in samples, freq_bin k, amplitude A, phase phi)
and rendered as A * w[n - tau] * cos(2 pi k (n - tau) / N + phi) on [0, T).

Bitstream (`encode_atoms` / `decode_atoms`): atoms sorted by time; per atom a 2-bit scale index,
the time step since the previous atom in units of the smallest hop (Exp-Golomb, order chosen per
file), the bin in log2(N/2) bits, the amplitude in 8 bits (log scale, 0.375 dB steps over 96 dB
below the loudest atom) and the phase in 6 bits.  `mp_codec` decodes from these quantised atoms.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from sparse_jax.baselines import CodecResult
from sparse_jax.signal import hann_periodic

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
  """One scale's frame grid, window, inverse Gram matrices and per-frame best score."""

  def __init__(self, n: int, length: int, pad: int):
    self.n, self.hop, self.k = n, n // 4, n // 2
    self.window = hann_periodic(n, np.float64)
    self.n_frames = (length - 1) // self.hop + 1
    # Frame m reads buffer[offset + m * hop : offset + m * hop + n]; the buffer holds the signal at
    # offset `pad`.
    self.offset = pad - n // 2
    self.arange = np.arange(n)
    self.best = np.zeros(self.n_frames)
    self.best_bin = np.zeros(self.n_frames, dtype=np.int64)
    self.inverse = _pseudo_inverse(*self._gram(self.window))
    # Frames that stick out of [0, length) (the first two, and the last few) see a cut window,
    # hence their own Gram matrices.
    self.first_whole = min(-(-(n // 2) // self.hop), self.n_frames)
    self.last_whole = (length - n // 2) // self.hop  # The last m with m * hop + n/2 <= length.
    self.cut_inverse = {}
    cut = set(range(self.first_whole)) | set(range(max(0, self.last_whole + 1), self.n_frames))
    for m in sorted(cut):
      sample_G = m * self.hop - n // 2 + self.arange
      window_G = self.window * ((sample_G >= 0) & (sample_G < length))
      self.cut_inverse[m] = _pseudo_inverse(*self._gram(window_G))

  def _gram(self, window_G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """<c, c>, <s, s>, <c, s> for bins 0..K-1, from the DFT of the squared window.

    cos^2 = (1 + cos 2t) / 2, sin^2 = (1 - cos 2t) / 2, cos sin = sin(2t) / 2, so all three are
    read off the DFT of w^2 at bin 2k.
    """
    w2_spec = np.fft.fft(window_G**2)
    total, at_2k = w2_spec[0].real, w2_spec[2 * np.arange(self.k)]
    return (total + at_2k.real) / 2.0, (total - at_2k.real) / 2.0, -at_2k.imag / 2.0

  def frame_inverses(self, first: int, last: int):
    """(h_cc, h_ss, h_cs) of frames first..last-1, each broadcastable to (F, K)."""
    if first >= self.first_whole and last - 1 <= self.last_whole:
      return self.inverse
    inverses = [np.tile(h, (last - first, 1)) for h in self.inverse]
    for m in range(first, last):
      if m in self.cut_inverse:
        for h_NxF, h_cut in zip(inverses, self.cut_inverse[m]):
          h_NxF[m - first] = h_cut
    return inverses

  def coefficients(self, buffer: np.ndarray, first: int, last: int):
    """Inner products (b_c, b_s), each (F, K), of the residual with the (c, s) pairs of frames
    first..last-1."""
    lo = self.offset + first * self.hop
    hi = self.offset + (last - 1) * self.hop + self.n
    segments_NxG = np.lib.stride_tricks.sliding_window_view(buffer[lo:hi], self.n)[::self.hop]
    spec_NxF = np.fft.rfft(segments_NxG * self.window, axis=1)[:, :self.k]
    return spec_NxF.real, -spec_NxF.imag

  def update(self, buffer: np.ndarray, first: int, last: int) -> None:
    """Recompute the best (score, bin) of frames first..last-1."""
    if last <= first:
      return
    b_c, b_s = self.coefficients(buffer, first, last)
    h_cc, h_ss, h_cs = self.frame_inverses(first, last)
    # ||P r||^2 = b^T G^+ b.
    score_NxF = h_cc * b_c**2 + h_ss * b_s**2 + 2.0 * h_cs * (b_c * b_s)
    best_bin = np.argmax(score_NxF, axis=1)
    self.best_bin[first:last] = best_bin
    self.best[first:last] = score_NxF[np.arange(last - first), best_bin]

  def frames_touching(self, lo: int, hi: int) -> tuple[int, int]:
    """The range [first, last) of frames whose support overlaps buffer[lo:hi]."""
    first = max(0, (lo - self.offset - self.n) // self.hop + 1)
    last = min(self.n_frames, -(-(hi - self.offset) // self.hop))
    return first, last


def _pseudo_inverse(cc, ss, cs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Entries (h_cc, h_ss, h_cs) of the (pseudo-)inverse of each Gram matrix [[cc, cs], [cs, ss]].

  Where the pair is (nearly) collinear, the subspace is treated as the single direction of the
  larger of c and s (exactly right for k = 0, where s is zero).
  """
  det = cc * ss - cs * cs
  full = det > _RANK_TOL * cc * ss
  with np.errstate(divide="ignore", invalid="ignore"):
    h_cc = np.where(full, ss / det, np.where((cc >= ss) & (cc > 0), 1.0 / cc, 0.0))
    h_ss = np.where(full, cc / det, np.where((ss > cc) & (ss > 0), 1.0 / ss, 0.0))
    h_cs = np.where(full, -cs / det, 0.0)
  return h_cc, h_ss, h_cs


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
      g.update(buffer, first, min(g.n_frames, first + step))

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
    b_c, b_s = (float(v[0, k]) for v in g.coefficients(buffer, m, m + 1))
    h_cc, h_ss, h_cs = (float(np.broadcast_to(h, (1, g.k))[0, k])
                        for h in g.frame_inverses(m, m + 1))
    # The projection P r = a_c c + a_s s, with (a_c, a_s) = G^+ b.
    a_c, a_s = h_cc * b_c + h_cs * b_s, h_cs * b_c + h_ss * b_s
    lo = g.offset + m * g.hop
    theta_G = 2.0 * np.pi * k * g.arange / g.n
    atom_G = g.window * (a_c * np.cos(theta_G) + a_s * np.sin(theta_G))
    # Keep the padding zero: the atom is cut to the signal.
    sample_G = lo - pad + g.arange
    atom_G *= (sample_G >= 0) & (sample_G < length)
    segment = buffer[lo:lo + g.n]
    before = float(np.dot(segment, segment))
    segment -= atom_G
    energy.append(max(0.0, energy[-1] - before + float(np.dot(segment, segment))))
    # a_c cos + a_s sin = A cos(theta + phi) with A cos(phi) = a_c, A sin(phi) = -a_s.
    atoms[i] = (g.n, m * g.hop, k, math.hypot(a_c, a_s), math.atan2(-a_s, a_c))
    for other in grid:
      other.update(buffer, *other.frames_touching(lo, lo + g.n))

  recon_T = x_T - buffer[pad:pad + length]
  return MPResult(atoms=atoms, recon_T=recon_T, residual_energy=np.array(energy))


def render_atoms(atoms: np.ndarray, length: int) -> np.ndarray:
  """Sum of atoms A * w[n - tau] cos(2 pi k (n - tau) / N + phi), tau = time - N/2, on [0, length).

  Rendered per scale as a short-time Fourier synthesis: each atom is one complex coefficient in its
  frame's spectrum, every frame is inverse-FFT'd and windowed once, and frames are overlap-added.
  That costs the same for 10 or 10,000 atoms.

  Args:
    atoms: (n,) structured array of ATOM_DTYPE, on the dictionary's grid (time a non-negative
      multiple of scale / 4, freq_bin in [0, scale / 2)).
    length: output length in samples.

  Returns:
    (length,) float64.
  """
  out_T = np.zeros(length)
  for n in np.unique(atoms["scale"]).tolist():
    group = atoms[atoms["scale"] == n]
    hop = n // 4
    frame = group["time"] // hop
    if np.any(group["time"] % hop) or np.any(group["time"] < 0) or np.any(
        (group["freq_bin"] < 0) | (group["freq_bin"] >= n // 2)):
      raise ValueError(f"atoms of scale {n} are off the dictionary grid")
    n_frames = int(frame.max()) + 1
    spec_NxF = np.zeros((n_frames, n // 2 + 1), dtype=np.complex128)
    # irfft(X)[j] = (X_0 + 2 Re sum_k X_k e^{2 pi i k j / n}) / n, so X_k = A e^{i phi} n / 2 gives
    # A cos(2 pi k j / n + phi); bin 0 only keeps the real part, so it needs A cos(phi) n.
    coef = group["amplitude"] * np.exp(1j * group["phase"]) * np.where(
        group["freq_bin"] == 0, float(n), n / 2.0)
    np.add.at(spec_NxF, (frame, group["freq_bin"]), coef)
    frames_NxG = np.fft.irfft(spec_NxF, n=n, axis=1) * hann_periodic(n, np.float64)
    # Frame m covers buffer[m * hop, m * hop + n), i.e. samples from m * hop - n/2; every fourth
    # frame tiles the buffer without overlap, so four strided adds do the overlap-add.
    buffer = np.zeros((n_frames + 3) * hop + n)
    for j in range(4):
      tiles = frames_NxG[j::4].reshape(-1)
      buffer[j * hop:j * hop + tiles.size] += tiles
    visible = buffer[n // 2:n // 2 + length]
    out_T[:visible.size] += visible
  return out_T


# ------------------------------------------------------------------------------------------------
# Bitstream.


class _BitWriter:
  """Big-endian bit packing (bits kept as a '0'/'1' string: simple, and fast enough here)."""

  def __init__(self):
    self._parts: list[str] = []

  def write(self, value: int, width: int) -> None:
    if not 0 <= value < (1 << width):
      raise ValueError(f"{value} does not fit in {width} bits")
    if width:
      self._parts.append(format(value, f"0{width}b"))

  def write_exp_golomb(self, value: int, order: int) -> None:
    """Exp-Golomb code of order `order`: (value + 2^order) in binary after as many zeros as it has
    bits beyond order + 1."""
    shifted = value + (1 << order)
    width = shifted.bit_length()
    self._parts.append("0" * (width - 1 - order) + format(shifted, "b"))

  def to_bytes(self) -> bytes:
    bits = "".join(self._parts)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


class _BitReader:

  def __init__(self, data: bytes):
    self._bits = "".join(format(byte, "08b") for byte in data)
    self._pos = 0

  def read(self, width: int) -> int:
    if self._pos + width > len(self._bits):
      raise ValueError("truncated matching-pursuit bitstream")
    chunk = self._bits[self._pos:self._pos + width]
    self._pos += width
    return int(chunk, 2) if width else 0

  def read_exp_golomb(self, order: int) -> int:
    one = self._bits.find("1", self._pos)
    if one < 0:
      raise ValueError("truncated matching-pursuit bitstream")
    zeros = one - self._pos
    return self.read(2 * zeros + order + 1) - (1 << order)


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

  amp_levels = (1 << _AMP_BITS) - 1
  with np.errstate(divide="ignore"):
    rel_db = 20.0 * np.log10(atoms["amplitude"] / float(amp_max)) if atoms.size else np.zeros(0)
  amp_codes = np.clip(np.round((rel_db + _AMP_RANGE_DB) / _AMP_RANGE_DB * amp_levels), 0,
                      amp_levels).astype(np.int64)
  phase_codes = np.round(atoms["phase"] / (2 * np.pi) * (1 << _PHASE_BITS)).astype(np.int64) % (
      1 << _PHASE_BITS)

  w = _BitWriter()
  w.write(length, 32)
  w.write(atoms.size, 32)
  w.write(int(np.array(amp_max, dtype=np.float32).view(np.uint32)), 32)
  w.write(len(scales) - 1, _SCALE_BITS)
  for n in scales:
    w.write(n.bit_length() - 1, 5)
  w.write(order, 5)
  for n, step, k, amp, phase in zip(atoms["scale"].tolist(), steps.tolist(),
                                    atoms["freq_bin"].tolist(), amp_codes.tolist(),
                                    phase_codes.tolist()):
    w.write(scales.index(n), _SCALE_BITS)
    w.write_exp_golomb(step, order)
    w.write(k, (n // 2).bit_length() - 1)
    w.write(amp, _AMP_BITS)
    w.write(phase, _PHASE_BITS)
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
    CodecResult: decoded_T from the quantised atoms, kbps of the atom payload (the bitstream minus
    its header, as for the other codecs; the last byte's padding, under 8 bits, counts as payload),
    file_kbps of the whole bitstream.
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
