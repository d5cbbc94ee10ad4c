"""The encoder: the prefix-cropped stack equals the full-window stack; choices are first-half."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import musicnet
from sparse_jax.encoder import Encoder, choose_event, exclusion_mask


def full_window_reference(enc: Encoder, spec_BxFxN):
  """The stack as the paper computes it: every layer on all N frames, d zeros padded right."""
  x = np.asarray(enc.proj(jnp.swapaxes(spec_BxFxN, 1, 2)))
  skips = 0
  for block in enc.blocks:
    d = block.dilation
    shifted = np.pad(x, ((0, 0), (0, d), (0, 0)))[:, d:]
    v, g = np.asarray(block.v[...]), np.asarray(block.g[...])
    w = v * (g / np.linalg.norm(v, axis=0))
    h = np.concatenate([x, shifted], -1) @ w + np.asarray(block.b[...])
    conv, gate = np.split(h, 2, axis=-1)
    y = np.tanh(conv * float(block.tanh_weight[...])) / (
        1 + np.exp(-gate * float(block.sigmoid_weight[...])))
    x = y + x
    skips = skips + x
  h = np.asarray(enc.ff(jnp.asarray(skips)))
  return np.asarray(enc.to_vectors(jnp.asarray(h))), np.asarray(enc.to_switch(jnp.asarray(h)))[..., 0]


def test_cropped_encoder_equals_full_window_on_the_first_half():
  cfg = musicnet.get_config("tiny").model
  cfg.dilations = (1, 2, 4, 8, 16, 32, 64, 1)  # receptive field 128 > half the window
  enc = Encoder(cfg, nnx.Rngs(0))
  spec = jnp.asarray(np.random.default_rng(0).random((2, cfg.window // 2 + 1,
                                                       cfg.n_samples // cfg.hop)), jnp.float32)
  vectors, switch = enc(spec)
  ref_vectors, ref_switch = full_window_reference(enc, spec)
  half = cfg.n_samples // cfg.hop // 2
  assert vectors.shape == (2, half, cfg.event_dim)
  np.testing.assert_allclose(vectors, ref_vectors[:, :half], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(switch, ref_switch[:, :half], rtol=1e-4, atol=1e-5)
  # And it is anti-causal: changing the last frames it may see changes nothing before them.
  assert enc.frames_needed()[0] == half + sum(cfg.dilations)


def test_encoder_never_reads_past_its_receptive_field():
  cfg = musicnet.get_config("tiny").model
  enc = Encoder(cfg, nnx.Rngs(1))
  n = cfg.n_samples // cfg.hop
  spec = np.random.default_rng(1).random((1, cfg.window // 2 + 1, n)).astype(np.float32)
  v1, s1 = enc(jnp.asarray(spec))
  spec[:, :, enc.frames_needed()[0]:] = 1e3  # beyond what any first-half frame can see
  v2, s2 = enc(jnp.asarray(spec))
  np.testing.assert_array_equal(v1, v2)
  np.testing.assert_array_equal(s1, s2)


def test_choose_event_takes_the_largest_relu_switch_and_its_vector():
  vectors = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
  switch = jnp.array([[0.1, 3.0, -1.0, 2.0], [-1.0, -2.0, -0.5, -3.0]])
  vector, frame, gain = choose_event(vectors, switch)
  np.testing.assert_array_equal(frame, [1, 0])
  np.testing.assert_allclose(gain, [3.0, 0.0])  # all-negative switches: a silent event
  np.testing.assert_array_equal(vector, [vectors[0, 1], vectors[1, 0]])
  # Gradient reaches the chosen switch value only (it is the event's amplitude).
  g = jax.grad(lambda s: choose_event(vectors, s)[2].sum())(switch)
  np.testing.assert_array_equal(g, [[0, 1, 0, 0], [0, 0, 0, 0]])


def test_choose_event_keeps_to_the_available_frames():
  vectors = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
  switch = jnp.array([[0.1, 3.0, -1.0, 2.0], [-1.0, -2.0, -0.5, -3.0]])
  available = jnp.array([[True, False, True, True], [False, True, True, True]])
  vector, frame, gain = choose_event(vectors, switch, available)
  # Row 0: frame 1 is closed, so frame 3 (2.0), the next largest.  Row 1: all silent, so the
  # first available frame, still at gain 0, never the closed frame 0.
  np.testing.assert_array_equal(frame, [3, 1])
  np.testing.assert_allclose(gain, [2.0, 0.0])
  np.testing.assert_array_equal(vector, [vectors[0, 3], vectors[1, 1]])


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_exclusion_mask_closes_the_frames_within_radius_minus_one(radius):
  frames = np.array([0, 5, 9])
  got = np.asarray(exclusion_mask(jnp.asarray(frames), 10, radius))
  want = np.zeros((3, 10), bool)
  for row, f in enumerate(frames):
    for t in range(10):
      want[row, t] = abs(t - f) <= radius - 1
  np.testing.assert_array_equal(got, want)

