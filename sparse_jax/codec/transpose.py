"""Transposing events in codec space: a new vector for each event, at another pitch.

An event is a vector; a model with a pitch control (a `harmonic` block) chooses the event's note
from it (`Codec.midi_pitches`).  To move an event by some semitones, its vector is moved: a search
from the old vector for one whose pitch head chooses the new note while every other head of the
decoder (the attack, the timbre, the decay, the room, the fine offset) keeps its output, so the
event keeps its time, its gain and, as near as the vector space allows, its sound (measured on a
quickstart-size model, not near: the other heads move 2-3x the distance to the nearest other
event; `benchmarks/transpose.py`, docs/notes.md).  The search is
Adam on a cross-entropy towards the new pitch plus the other heads' relative squared change,
stopped per event once the new pitch wins by a margin (`MARGIN` in logits), then the vector is
snapped to the file's grid and its pitch read again: an event whose snapped vector does not
sound the new note keeps its old vector, and the caller says how many moved.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sparse_jax import blocks
from sparse_jax.codec import sjx
from sparse_jax.errors import UserError

STEPS = 400            # Adam steps of the search (all events at once)
LEARNING_RATE = 0.05
MARGIN = 2.0           # logits by which the new pitch must beat every other once found
KEEP_WEIGHT = 1.0      # weight of the other heads' relative change against the cross-entropy
SEARCH_BATCH = 256     # events searched at once: memory that of one batch, however long the file


def _pitch_block(codec):
  block = blocks.pitch_block(blocks.chain(codec.cfg.model))
  if block is not None:
    return block
  raise UserError("this model has no pitch control (no 'harmonic' block in its chain), so its "
                  "events cannot be transposed; encode with a model trained with one "
                  "(docs/notes.md)")


_SEARCHES: dict = {}  # jitted searches by (model config, block): reloading a model reuses them


def _search_fn(codec, block_name: str):
  """Jitted: (params, consts, vectors (B, D), targets (B,)) -> searched vectors (B, D)."""
  key = (codec._key, block_name)  # the model config's key, as the codec's own jit cache
  if key not in _SEARCHES:
    _SEARCHES[key] = _make_search(codec.graphs, block_name)
  return _SEARCHES[key]


def _make_search(graphs, block_name: str):

  def fn(g_params, g_consts, vectors_BxD, target_B):
    decoder = nnx.merge(graphs.g_graph, g_params, g_consts).decoder
    start = decoder.heads(vectors_BxD)
    others = [(owner, head) for owner, heads in start.items() for head in heads
              if (owner, head) != (block_name, "pitch")]

    def losses(v_BxD):
      heads = decoder.heads(v_BxD)
      logits_BxP = heads[block_name]["pitch"]
      ce_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxP, target_B)
      keep_B = 0.0
      for owner, head in others:
        old = start[owner][head].reshape(v_BxD.shape[0], -1)
        new = heads[owner][head].reshape(v_BxD.shape[0], -1)
        keep_B = keep_B + (jnp.sum((new - old) ** 2, axis=1)
                           / (jnp.sum(old ** 2, axis=1) + 1e-6))
      target_logit = jnp.take_along_axis(logits_BxP, target_B[:, None], axis=1)[:, 0]
      rival = jnp.max(jnp.where(jax.nn.one_hot(target_B, logits_BxP.shape[1]) > 0, -jnp.inf,
                                logits_BxP), axis=1)
      return ce_B + KEEP_WEIGHT * keep_B / max(len(others), 1), target_logit - rival

    opt = optax.adam(LEARNING_RATE)

    def summed(v_BxD):
      loss_B, margin_B = losses(v_BxD)
      return jnp.sum(loss_B), margin_B

    def step(_, carry):
      v, state, done = carry
      (_, margin_B), grad = jax.value_and_grad(summed, has_aux=True)(v)
      updates, state = opt.update(grad, state, v)
      moved = optax.apply_updates(v, updates)
      # An event stops moving once its new pitch wins by the margin.
      done = done | (margin_B >= MARGIN)
      return jnp.where(done[:, None], v, moved), state, done

    v, _, _ = jax.lax.fori_loop(0, STEPS, step, (vectors_BxD, opt.init(vectors_BxD),
                                                 jnp.zeros(vectors_BxD.shape[0], bool)))
    return v

  return jax.jit(fn)


def transpose(codec, events, semitones: int, indices=None, bits: int | None = 8):
  """`events` with the pitched ones among `indices` (default all) moved by `semitones`.

  Returns:
    (the edited EventSet, {"moved": n, "pitched": events that sound a pitch among those asked,
    "out_of_range": of those, how many the move would take outside the model's pitches,
    "missed": how many the search could not move}).

  Raises:
    UserError: a model without a pitch control, or events of another model.
  """
  block = _pitch_block(codec)
  codec.check_compatible(events)
  semitones = int(semitones)
  chosen = np.zeros(len(events), bool)
  chosen[np.arange(len(events)) if indices is None else np.asarray(indices, np.int64)] = True
  midi_E = codec.midi_pitches(events.vectors)
  pitched = chosen & np.isfinite(midi_E)
  target_E = np.where(pitched, midi_E + semitones, -1)
  in_range = pitched & (target_E >= block.lowest_midi) & (
      target_E < block.lowest_midi + block.n_pitches)
  report = {"pitched": int(pitched.sum()), "out_of_range": int((pitched & ~in_range).sum()),
            "moved": 0, "missed": 0}
  todo = np.flatnonzero(in_range)
  if semitones == 0 or todo.size == 0:
    return events, report
  vectors = np.array(events.vectors, np.float32)
  search = _search_fn(codec, block.name)
  found = np.empty((todo.size, vectors.shape[1]), np.float32)
  for lo in range(0, todo.size, SEARCH_BATCH):
    part = todo[lo:lo + SEARCH_BATCH]
    # Padded to a power of two (8 to SEARCH_BATCH): a handful of compiled sizes.
    size = max(8, 1 << int(np.ceil(np.log2(part.size))))
    start_BxD = np.zeros((size, vectors.shape[1]), np.float32)
    start_BxD[:part.size] = vectors[part]
    target_B = np.zeros(size, np.int32)
    target_B[:part.size] = target_E[part] - block.lowest_midi
    found[lo:lo + part.size] = np.asarray(search(
        codec.g_params, codec.graphs.g_consts, jnp.asarray(start_BxD),
        jnp.asarray(target_B)))[:part.size]
  found, _ = sjx.snap_to_file(found, np.zeros(todo.size, np.float32), events.hop, bits)
  landed = codec.midi_pitches(found) == target_E[todo]
  vectors[todo[landed]] = found[landed]
  report["moved"], report["missed"] = int(landed.sum()), int((~landed).sum())
  return events.replace(vectors=vectors), report
