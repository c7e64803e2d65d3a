"""Training-only losses and diagnostics of the embedded base model, against hand-computed values."""
import jax
import jax.numpy as jnp
import numpy as np

from score_jax.embedded import base_model


def test_balanced_dense_loss_weights_each_class_equally():
  # Nine "unchanged" tokens predicted right with p = 0.9, one "changed" token predicted with p = 0.1.
  logits = jnp.log(jnp.array([[0.9, 0.1]] * 10))
  target = jnp.array([0] * 9 + [1])
  plain = float(base_model._dense_loss(logits, target))
  balanced = float(base_model._dense_loss(logits, target, balanced=True))
  np.testing.assert_allclose(plain, (9 * -np.log(0.9) - np.log(0.1)) / 10, rtol=1e-5)
  np.testing.assert_allclose(balanced, (-np.log(0.9) - np.log(0.1)) / 2, rtol=1e-5)


def test_word_tied_logits_score_features_against_the_word_vectors():
  words = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  none = jnp.array([0.0, 0.0, 1.0])
  bias = jnp.array([0.0, 0.5, 0.0])
  x = jnp.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
  logits = base_model.word_tied_logits(x, words, none, bias)
  np.testing.assert_allclose(logits, [[2.0, 1.5, 0.0], [0.0, 0.5, 3.0]])


def test_tied_heads_read_the_decoders_own_word_vectors():
  """The vision heads score against the input embeddings, the decoder heads against the LM head:
  changing a word's embedding changes only the vision side's logits for that word."""
  d, vocab = 4, 6
  rng = np.random.default_rng(0)
  params = {"language_model": {"embed_tokens": {"embedding": jnp.asarray(rng.normal(size=(vocab, d)))},
                               "lm_head": {"kernel": jnp.asarray(rng.normal(size=(d, vocab)))}}}
  tied = base_model.TiedHeads(2, 1, d).init(jax.random.key(0))["params"]
  x = jnp.asarray(rng.normal(size=(1, 1, 3, d)))
  ids = ((1, 3), (5,))
  before = base_model.tied_head_logits(None, params, tied, ids, x, x)
  np.testing.assert_allclose(before["vision_color"][..., :2], x @ params["language_model"]["embed_tokens"]["embedding"][jnp.array([1, 3])].T,
                             rtol=1e-5)
  np.testing.assert_allclose(before["llm_shape"][..., :1], x @ params["language_model"]["lm_head"]["kernel"][:, jnp.array([5])],
                             rtol=1e-5)
  params["language_model"]["embed_tokens"]["embedding"] = params["language_model"]["embed_tokens"]["embedding"].at[3].add(1.0)
  after = base_model.tied_head_logits(None, params, tied, ids, x, x)
  assert not np.allclose(after["vision_color"][..., 1], before["vision_color"][..., 1])
  np.testing.assert_allclose(after["vision_color"][..., 0], before["vision_color"][..., 0], rtol=1e-6)
  np.testing.assert_allclose(after["llm_color"], before["llm_color"], rtol=1e-6)
