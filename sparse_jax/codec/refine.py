"""Encode-time refinement (`encode --refine N`): analysis by synthesis through the decoder.

The removal loop picks each window's events greedily, one at a time, against magnitude
spectrograms, and never revisits them.  The decoder is differentiable, so the events it picked are
a starting point: this module takes N Adam steps on every window's event vectors, log-gains and
fine offsets (frames fixed) to lower a multi-resolution spectral loss of the window's MIXED,
decoded audio against the input, then runs the streaming encoder's guarantee (`gains.py`) again.

What is optimised, per window w (its contribution spans samples [a_w, a_w + T)):

  loss_w = sum over resolutions r of  ||Y_r| - |X_r||_1 / ||X_r||_1
                                    + LOG_WEIGHT * mean |log(|Y_r| + eps_r) - log(|X_r| + eps_r)|

  on the span [a_w - P, a_w + T + P) (P: the largest loss window), where X is the input, Y the
  decoded audio: window w's events plus every other window's current events (the context), cut at
  the end of the file.  Resolutions: the model's STFT and the reported 2048/256 one, the two the
  guarantee checks (`loss_resolutions`).  The fine offset ranges over [-hop, hop], so frames stay
  fixed but an event may still move by up to a frame either way.

Windows overlap by half, so neighbours share audio.  Refining all of them at once against each
other's old events would let two neighbours fix the same shared error twice; they are refined in
two colours instead (even windows, then odd windows against the refined even ones): windows of one
colour do not overlap, so each colour is one exact block of a block-coordinate descent, and its
windows are independent problems that run together: up to BATCH_WINDOWS windows per batch, their
events on one flat axis (the decoder's batch), each window's loss on its own span.  Each window
keeps the best iterate it saw (step 0 is the plain encode), so the loss never ends higher than it
started.

The guarantee, afterwards, in window order: each window's refined events (snapped to the `.sjx`
grid) get the alpha of `gains.SafeScale` against the audio decoded so far, exactly as the plain
encoder's do; so do its plain events, in the same context.  The refined candidate is taken only if
its decoded spectral L1 error is no larger than the plain candidate's at EVERY checked resolution
(else the plain one is kept).  So each window's step still never raises the decoded error
(explained >= 0 for any input), and no window is worse than its unrefined encode in the same
context.  Finally, if the whole refined file decodes with more error than the plain file at any
checked resolution (contexts differ from window to window), the plain encode is returned.

Compilation: one step program per number of event slots (a multiple of an eighth of the batch
budget), whatever N and the file's length (the step index and count are arguments).
"""
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sparse_jax import audio_io, signal
from sparse_jax import progress as progress_lib
from sparse_jax.codec import gains as gains_lib
from sparse_jax.codec import sjx
from sparse_jax.errors import UserError

# A batch renders at most this many event samples (events x window length) per step: 128
# quickstart events, 32 full-size ones.  The backward pass holds a few dozen float32 arrays of this
# size.  On a CPU the step time is proportional to the events rendered (about 11 ms per quickstart
# event, measured), so batches hold the windows' real events only, in one flat event axis, padded
# to a multiple of an eighth of the budget (a few compiled shapes per run).
BATCH_EVENT_SAMPLES = 2**22
# Windows per batch (their targets and contexts are (B, span) arrays; empty slots cost a few STFTs).
BATCH_WINDOWS = 8
# Adam learning rates per parameter (vectors: in units of the window's vector RMS; fine offsets:
# in hops), cosine-decayed to LR_FLOOR of them over the N steps.  Chosen on 3 real clips of 3 s
# with the quickstart model at N = 30 (mean explained 0.087 plain): vectors/log-gains/offsets
# 0.2/0.1/0.05 gave 0.138, 0.4/0.1/0.05 0.142, 0.8/0.1/0.05 0.139, 0.4/0.2/0.05 0.141,
# 0.4/0.1/0.1 0.137 (with a third, quarter-size loss resolution: 0.05/0.05/0.02 0.105,
# 0.2/0.1/0.05 0.125, 0.5/0.2/0.1 0.113).
LR_VECTORS, LR_LOG_GAINS, LR_FINE = 0.4, 0.1, 0.05
LR_FLOOR = 0.1
# Weight of the log-magnitude term, and its floor (eps) as a share of the target's mean magnitude
# (0.1: 0.138 in the measurement above; 0: 0.137; 0.3, with the third resolution: 0.119 vs 0.125).
LOG_WEIGHT = 0.1
LOG_FLOOR = 0.01
# The largest --refine: a guard against a typo of days of compute.
MAX_STEPS = 10_000

_JIT_CACHE: dict = {}


@dataclasses.dataclass
class RefineInfo:
  """What `--refine N` did, per window (W windows, R checked resolutions).

  Attributes:
    steps: N, the Adam steps per window.
    refined_W: bool (W,), the window's refined events were kept (else its plain ones).
    loss_start_W, loss_end_W: float64 (W,), the refinement loss at step 0 (the plain events) and
      at its best iterate; NaN for a window without events (nothing to refine).
    plain_after_WxV: float64 (W, V), the decoded error on the window's frames with its PLAIN
      events (their best alpha) in the same context as the refined ones; the kept window's error
      (`EncodeInfo.decoded_l1_after_WxV`) is never above it.
    resolutions: the (window, hop) STFTs of the checks (`EncodeInfo.resolutions`).
    plain_error_V, error_V: float64 (V,), the whole file's decoded spectral L1 error, plain encode
      and returned encode (error_V <= plain_error_V).
    fell_back: the whole file was worse refined at some resolution, so the plain encode was kept.
    plain_events: the EventSet of the plain encode.
    seconds: wall-clock time of the refinement (compilation included).
  """
  steps: int
  refined_W: np.ndarray
  loss_start_W: np.ndarray
  loss_end_W: np.ndarray
  plain_after_WxV: np.ndarray
  resolutions: tuple
  plain_error_V: np.ndarray
  error_V: np.ndarray
  fell_back: bool
  plain_events: object
  seconds: float


def check_steps(value) -> int:
  """Refinement steps as an int in [0, MAX_STEPS], or UserError (one line naming the fix)."""
  text = str(value).strip()
  try:
    steps = int(text)
  except ValueError:
    raise UserError(f"refine steps {text!r}: not a whole number; pass e.g. 20 (0: no "
                    "refinement)") from None
  if not 0 <= steps <= MAX_STEPS:
    raise UserError(f"refine steps {steps}: must be between 0 and {MAX_STEPS}; pass e.g. 20 "
                    "(0: no refinement)")
  return steps


def loss_resolutions(codec) -> tuple:
  """(window, hop) STFTs of the refinement loss: those of the checks (the model's and 2048/256).

  A third, a quarter of the model's (128/32 on the quickstart model), was measured to lower the
  gain (3 real clips, N = 30: mean explained 0.125 with it, 0.138 without; 4096/512 or 1024/256 as
  the third: 0.135, 0.136).
  """
  return tuple(dict.fromkeys([(codec.window, codec.hop), (2048, 256)]))


def _safe_magnitude(spec):
  """|spec| with a finite gradient where the spectrum is exactly 0 (silence, padding)."""
  return jnp.sqrt(jnp.real(spec)**2 + jnp.imag(spec)**2 + 1e-12)


def _make_refine_fns(codec, resolutions, pad: int):
  """The jitted pieces of refinement: (prepare, step).

  prepare(target_BxL) -> targets: per resolution the target's |STFT|, its L1 (the loss's
  normaliser), the log term's floor and log-magnitude; once per batch.

  step(g_params, g_consts, state, data, targets, t, n_steps) -> state: step t of N = n_steps
  evaluates the loss and gradient at the params after t updates (t = 0: the plain encode), keeps
  them if they are the best so far, and if t < N takes an Adam step.  One step per call: a Python
  loop over jitted steps was measured 4x faster on the CPU than the same steps in a `fori_loop`
  (XLA:CPU runs a while loop's body without its usual parallelism), and the bar moves every step.

  Shapes: E event slots (the batch's events, flat), B window slots, L samples of a window's span.
  state: params {vectors (E, D), log_gains (E,), fine (E,) in hops}, the Adam state, the best
  params, best_loss (B,), first_loss (B,).  data: frames_E (relative to the event's window),
  mask_E (1: a real event), window_E (its window slot), rms_E (its window's vector RMS),
  context_BxL, valid_BxL (1: inside the file), live_B (1: a real window).
  """
  graphs, hop = codec.graphs, codec.hop
  adam = optax.scale_by_adam()

  def prepare(target_BxL):
    targets = []
    for window, h in resolutions:
      mag = jnp.abs(signal.stft(target_BxL, window, h))
      l1 = jnp.maximum(mag.sum((1, 2)), 1e-12)
      eps = (LOG_FLOOR * l1 / (mag.shape[1] * mag.shape[2]) + 1e-12)[:, None, None]
      targets.append(dict(mag=mag, l1=l1, eps=eps, log_mag=jnp.log(mag + eps)))
    return targets

  def loss_B(model, params, data, targets):
    b = data["live_B"].shape[0]
    gains_E = jnp.exp(params["log_gains"]) * data["mask_E"]
    fine_E = hop * jnp.clip(params["fine"], -1.0, 1.0)
    audio_ExT, _ = model.decoder(params["vectors"], data["frames_E"], gains_E, fine_E)
    # Each window's own audio: the sum of its events (a (B, E) x (E, T) product).
    own_BxT = jax.nn.one_hot(data["window_E"], b, dtype=audio_ExT.dtype).T @ audio_ExT
    mixed_BxL = (data["context_BxL"] + jnp.pad(own_BxT, ((0, 0), (pad, pad)))) * data["valid_BxL"]
    total = 0.0
    for (window, h), tg in zip(resolutions, targets):
      est = _safe_magnitude(signal.stft(mixed_BxL, window, h))
      total = total + jnp.abs(est - tg["mag"]).sum((1, 2)) / tg["l1"]
      total = total + LOG_WEIGHT * jnp.abs(jnp.log(est + tg["eps"]) - tg["log_mag"]).mean((1, 2))
    return total * data["live_B"]

  def step(g_params, g_consts, state, data, targets, t, n_steps):
    model = nnx.merge(graphs.g_graph, g_params, g_consts)
    params = state["params"]
    # The windows are independent problems: the gradient of the sum is each one's own gradient.
    (_, l_B), grads = jax.value_and_grad(
        lambda p: (lambda each: (each.sum(), each))(loss_B(model, p, data, targets)),
        has_aux=True)(params)
    better_B = l_B < state["best_loss"]
    better_E = better_B[data["window_E"]]
    pick = lambda new, old: jnp.where(better_E.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    updates, opt = adam.update(grads, state["opt"])
    # Cosine decay from the full rates to LR_FLOOR of them over the N steps.
    progress = jnp.minimum(t.astype(jnp.float32) / jnp.maximum(n_steps, 1), 1.0)
    decay = LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + jnp.cos(jnp.pi * progress))
    lrs = {"vectors": LR_VECTORS * data["rms_E"][:, None], "log_gains": LR_LOG_GAINS,
           "fine": LR_FINE}
    moved = {name: params[name] - decay * lrs[name] * updates[name] for name in params}
    last = t >= n_steps  # the final evaluation: nothing to update after it
    keep = lambda new, old: jnp.where(last, old, new)
    return dict(params=jax.tree.map(keep, moved, params),
                opt=jax.tree.map(keep, opt, state["opt"]),
                best=jax.tree.map(pick, params, state["best"]),
                best_loss=jnp.where(better_B, l_B, state["best_loss"]),
                first_loss=jnp.where(t == 0, l_B, state["first_loss"]))

  return jax.jit(prepare), jax.jit(step, donate_argnums=(2,))


def _refine_fns(codec, resolutions, pad):
  key = (codec._key, resolutions, pad)
  fns = _JIT_CACHE.get(key)
  if fns is None:
    fns = _JIT_CACHE[key] = _make_refine_fns(codec, resolutions, pad)
  return fns


def _init_state(vectors_ExD, gains_E, fine_E, hop, n_windows):
  params = {"vectors": jnp.asarray(vectors_ExD, jnp.float32),
            "log_gains": jnp.asarray(np.log(np.maximum(gains_E, 1e-30)), jnp.float32),
            "fine": jnp.asarray(np.clip(fine_E / hop, -1.0, 1.0), jnp.float32)}
  opt = optax.scale_by_adam().init(params)
  best_loss = jnp.full(n_windows, jnp.inf, jnp.float32)
  return dict(params=params, opt=opt, best=jax.tree.map(jnp.copy, params), best_loss=best_loss,
              first_loss=jnp.copy(best_loss))


def _cut(x_T, lo, hi):
  """x_T[lo:hi] as float32, zero outside x_T (lo may be negative)."""
  out = np.zeros(hi - lo, np.float32)
  a, b = max(lo, 0), min(hi, x_T.size)
  if b > a:
    out[a - lo:b - lo] = x_T[a:b]
  return out


def _add_at(x_T, lo, y_L):
  """x_T[lo:lo + len(y)] += y, clipped to x_T."""
  a, b = max(lo, 0), min(lo + y_L.size, x_T.size)
  if b > a:
    x_T[a:b] += y_L[a - lo:b - lo]


@dataclasses.dataclass
class _Window:
  """One window's events (K of them) while they are refined: frames relative to the window."""
  start: int            # first frame
  frames_K: np.ndarray
  vectors_KxD: np.ndarray
  gains_K: np.ndarray
  fine_K: np.ndarray
  steps_K: np.ndarray   # removal step of each event (EncodeInfo.event_step_E)


def refine(codec, audio_T, events, info, n_steps: int, *, bits, progress: bool = False):
  """Refines a plain encode (`encode.encode`'s events and EncodeInfo) by N Adam steps per window.

  Returns:
    (events, info): the refined EventSet (flagged `refined`) and the EncodeInfo updated for it
    (alpha, decoded errors, event windows and steps; `info.refine` a RefineInfo).
  """
  t_start = time.time()
  audio_T = np.asarray(audio_T, np.float32).reshape(-1)
  hop, n = codec.hop, codec.n_samples
  resolutions = loss_resolutions(codec)
  pad = max(w for w, _ in resolutions)
  n_windows = len(info.window_starts_W)
  windows = []
  for w in range(n_windows):
    sel = np.flatnonzero(info.event_window_E == w)
    start = int(info.window_starts_W[w])
    windows.append(_Window(start, events.frames[sel] - start, events.vectors[sel].copy(),
                           events.gains[sel].astype(np.float64), events.offsets[sel].copy(),
                           info.event_step_E[sel].copy()))

  # Every window's current contribution, summed: the context each window is refined against.
  total_len = (n_windows - 1) * codec.half * hop + n + 2 * pad
  current_T = np.zeros(total_len, np.float32)
  plain_contrib = [None] * n_windows
  for w, win in enumerate(windows):
    if win.frames_K.size:
      plain_contrib[w] = codec.render(win.vectors_KxD, win.frames_K, win.gains_K,
                                      win.fine_K).sum(0)
      _add_at(current_T, win.start * hop, plain_contrib[w])
  contrib = list(plain_contrib)

  loss_start_W = np.full(n_windows, np.nan)
  loss_end_W = np.full(n_windows, np.nan)
  budget = max(1, BATCH_EVENT_SAMPLES // n)
  batches = _plan([windows[w].frames_K.size for w in range(n_windows)], budget)
  # One pass over the two colours.  Splitting the N steps over two or three passes (each window's
  # Adam restarting in its neighbours' new context) was measured worse: 0.124 against 0.142 mean
  # explained at N = 30 on the clips of LR_VECTORS's note.
  bar = progress_lib.Progress(len(batches) * (n_steps + 1), "refining",
                              enabled=progress and n_steps > 0 and bool(batches), unit="step")
  done = 0
  if batches and n_steps:
    prepare, step = _refine_fns(codec, resolutions, pad)
  for ws in batches if n_steps else ():  # every even-window batch, then every odd-window one
    data, target_BxL, state, spans = _batch(codec, windows, ws, budget, pad, audio_T, current_T,
                                            contrib)
    targets = prepare(target_BxL)
    # Steps 0..N are evaluated (N + 1 losses; step 0 is the plain encode), N of them update.
    for t in range(n_steps + 1):
      state = step(codec.g_params, codec.graphs.g_consts, state, data, targets, np.int32(t),
                   np.int32(n_steps))
      done += 1
      if t % 5 == 0 or t == n_steps:
        bar.update(done)
    first = np.asarray(state["first_loss"])
    best = jax.tree.map(np.asarray, state["best"])
    best_loss = np.asarray(state["best_loss"])
    for i, (w, (lo, hi)) in enumerate(zip(ws, spans)):
      win = windows[w]
      loss_start_W[w], loss_end_W[w] = float(first[i]), float(best_loss[i])
      vectors, fine = sjx.snap_to_file(
          best["vectors"][lo:hi], hop * np.clip(best["fine"][lo:hi], -1.0, 1.0), hop, bits)
      gains = sjx.file_gains(np.exp(best["log_gains"][lo:hi].astype(np.float64)))
      windows[w] = dataclasses.replace(win, vectors_KxD=vectors, gains_K=gains, fine_K=fine)
      new = codec.render(vectors, win.frames_K, gains, fine).sum(0)
      _add_at(current_T, win.start * hop, new - contrib[w])
      contrib[w] = new
  bar.close()

  return _guarantee(codec, audio_T, events, info, n_steps, windows, plain_contrib,
                    loss_start_W, loss_end_W, t_start)


def _plan(counts_W, budget):
  """Batches of window indices: the even windows, then the odd ones, in order, each batch holding
  at most BATCH_WINDOWS windows and `budget` events (a larger window gets a batch of its own).
  Windows without events have nothing to refine and are left out."""
  batches = []
  for colour in (0, 1):
    current, count = [], 0
    for w in range(colour, len(counts_W), 2):
      k = int(counts_W[w])
      if not k:
        continue
      if current and (count + k > budget or len(current) == BATCH_WINDOWS):
        batches.append(current)
        current, count = [], 0
      current.append(w)
      count += k
    if current:
      batches.append(current)
  return batches


def _batch(codec, windows, ws, budget, pad, audio_T, current_T, contrib):
  """The data, target and initial state of one batch (windows `ws`), and each window's slice of
  the flat event axis.  Events are padded (mask 0) to a multiple of an eighth of the budget."""
  hop, n, d = codec.hop, codec.n_samples, codec.event_dim
  span = n + 2 * pad
  counts = [windows[w].frames_K.size for w in ws]
  step = max(1, budget // 8)
  e = -(-sum(counts) // step) * step
  frames = np.zeros(e, np.int32)
  mask = np.zeros(e, np.float32)
  window = np.zeros(e, np.int32)
  rms = np.ones(e, np.float32)
  vectors = np.zeros((e, d), np.float32)
  gains = np.ones(e, np.float64)
  fine = np.zeros(e, np.float32)
  context = np.zeros((BATCH_WINDOWS, span), np.float32)
  target = np.zeros((BATCH_WINDOWS, span), np.float32)
  valid = np.zeros((BATCH_WINDOWS, span), np.float32)
  live = np.zeros(BATCH_WINDOWS, np.float32)
  spans, lo_e = [], 0
  for i, w in enumerate(ws):
    win = windows[w]
    hi_e = lo_e + win.frames_K.size
    spans.append((lo_e, hi_e))
    sl = slice(lo_e, hi_e)
    frames[sl], mask[sl], window[sl] = win.frames_K, 1.0, i
    vectors[sl], gains[sl], fine[sl] = win.vectors_KxD, win.gains_K, win.fine_K
    # Adam's vector steps in units of the window's vector RMS: the model's vectors have no fixed
    # scale (a collapsed model's can be tiny or huge).
    rms[sl] = max(float(np.sqrt(np.mean(win.vectors_KxD.astype(np.float64)**2))), 1e-3)
    lo = win.start * hop - pad
    own = np.zeros(span, np.float32)
    own[pad:pad + n] = contrib[w]
    context[i] = _cut(current_T, lo, lo + span) - own
    target[i] = _cut(audio_T, lo, lo + span)
    idx = np.arange(lo, lo + span)
    valid[i] = (idx >= 0) & (idx < audio_T.size)
    live[i] = 1.0
    lo_e = hi_e
  data = dict(frames_E=frames, mask_E=mask, window_E=window, rms_E=rms, context_BxL=context,
              valid_BxL=valid, live_B=live)
  # Committed to the device like the step's outputs: an uncommitted first state was measured to
  # compile the step a second time on its second call (13 s on the CPU).
  device = jax.devices()[0]
  return (jax.device_put(data, device), jax.device_put(target, device),
          jax.device_put(_init_state(vectors, gains, fine, hop, BATCH_WINDOWS), device), spans)


def _candidate(codec, padded_T, decoded_T, start, n_audio, resolutions, unit_KxT, gains_K):
  """A window's events through the guarantee of `gains.py`: its alpha and decoded error.

  The same steps as the plain encoder's (`encode._fit_window`): the alpha in [0, 1] that lowers the
  decoded error most without raising it at any resolution, applied to the float16 gains the file
  will hold, and checked again on those.
  """
  check = gains_lib.SafeScale(padded_T, decoded_T, gains_lib.mix(gains_K, unit_KxT), start,
                              n_audio, resolutions)
  alpha = check.best_alpha()
  final_K = sjx.file_gains(alpha * gains_K) if alpha > 0 else np.zeros(gains_K.size)
  contribution_T = gains_lib.mix(final_K, unit_KxT)
  after = check.errors_with(contribution_T)
  if alpha > 0 and not check.acceptable(after[None])[0]:
    final_K, contribution_T = np.zeros(gains_K.size), np.zeros_like(contribution_T)
    alpha, after = 0.0, check.before
  return dict(gains=final_K, contribution=contribution_T, alpha=alpha, before=check.before,
              after=after)


def _guarantee(codec, audio_T, events, info, n_steps, windows, plain_contrib, loss_start_W,
               loss_end_W, t_start):
  """The encoder's guarantee (`gains.py`) on the refined windows, in window order: refined or
  plain events per window, then the whole-file check against the plain encode."""
  hop, n = codec.hop, codec.n_samples
  n_audio, n_windows = audio_T.size, len(windows)
  resolutions = info.resolutions
  padded_len = ((n_windows - 1) * codec.half * hop + n
                + max(codec.window, max(w for w, _ in resolutions)))
  padded_T = np.zeros(padded_len, np.float32)
  padded_T[:n_audio] = audio_T
  decoded_T = np.zeros(padded_len, np.float64)
  plain_T = np.zeros(padded_len, np.float64)
  refined_W = np.zeros(n_windows, bool)
  plain_after_WxV = np.zeros((n_windows, len(resolutions)))
  rows = {key: [] for key in ("alpha", "before", "after")}
  columns = {key: [] for key in ("frames", "gains", "fine", "vectors", "window", "step")}
  for w, win in enumerate(windows):
    a = win.start * hop
    sel = np.flatnonzero(info.event_window_E == w)
    if plain_contrib[w] is not None:
      _add_at(plain_T, a, plain_contrib[w].astype(np.float64))
    cands = []
    for vectors, gains, fine in ((events.vectors[sel], events.gains[sel], events.offsets[sel]),
                                 (win.vectors_KxD, win.gains_K, win.fine_K)):
      unit_KxT = codec.render(vectors, win.frames_K, np.ones(sel.size, np.float32),
                              fine).astype(np.float64) if sel.size else np.zeros((0, n))
      cand = _candidate(codec, padded_T, decoded_T, a, n_audio, resolutions, unit_KxT,
                        np.asarray(gains, np.float64))
      cand.update(vectors=vectors, fine=fine)
      cands.append(cand)
    plain, refined = cands
    plain_after_WxV[w] = plain["after"]
    refined_W[w] = bool(sel.size) and bool(np.all(refined["after"] <= plain["after"]))
    chosen = refined if refined_W[w] else plain
    _add_at(decoded_T, a, chosen["contribution"])
    keep = chosen["gains"] > 0
    columns["frames"].append(win.start + win.frames_K[keep])
    columns["gains"].append(chosen["gains"][keep].astype(np.float32))
    columns["fine"].append(np.asarray(chosen["fine"], np.float32)[keep])
    columns["vectors"].append(np.asarray(chosen["vectors"], np.float32)[keep])
    columns["step"].append(win.steps_K[keep])
    columns["window"].append(np.full(int(keep.sum()), w, np.int64))
    for key in rows:
      rows[key].append(chosen[key])

  # The file-level check: the whole decoded file against the plain one, at every resolution.
  from sparse_jax import metrics
  x_T = audio_T.astype(np.float64)
  error = lambda y_T, r: float(np.abs(metrics.stft_magnitude(x_T, *r) -
                                      metrics.stft_magnitude(y_T[:n_audio], *r)).sum())
  plain_error_V = np.array([error(plain_T, r) for r in resolutions])
  error_V = np.array([error(decoded_T, r) for r in resolutions])
  fell_back = bool(np.any(error_V > plain_error_V))
  if fell_back:  # the plain file's own windows, in their own context
    plain_after_WxV = info.decoded_l1_after_WxV
  report = RefineInfo(steps=n_steps, refined_W=refined_W & ~fell_back, loss_start_W=loss_start_W,
                      loss_end_W=loss_end_W, plain_after_WxV=plain_after_WxV,
                      resolutions=tuple(resolutions),
                      plain_error_V=plain_error_V,
                      error_V=plain_error_V if fell_back else error_V, fell_back=fell_back,
                      plain_events=events, seconds=time.time() - t_start)
  if fell_back:
    return events.replace(refined=True), dataclasses.replace(info, refine=report)
  cat = lambda key, dtype: np.concatenate(columns[key]).astype(dtype)
  refined_events = events.replace(
      frames=cat("frames", np.int64), offsets=cat("fine", np.float32),
      gains=cat("gains", np.float32),
      vectors=np.concatenate(columns["vectors"]).reshape(-1, codec.event_dim), refined=True)
  info = dataclasses.replace(
      info, alpha_W=np.asarray(rows["alpha"], np.float64),
      decoded_l1_before_WxV=np.stack(rows["before"]), decoded_l1_after_WxV=np.stack(rows["after"]),
      event_window_E=cat("window", np.int64), event_step_E=cat("step", np.int64),
      refine=report, seconds=info.seconds + report.seconds,
      decoded_rms=audio_io.rms(decoded_T[:n_audio]))
  return refined_events, info
