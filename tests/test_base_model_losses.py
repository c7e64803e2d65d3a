"""Training-only losses and diagnostics of the embedded base model, against hand-computed values."""
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


def test_pointer_hit_counts_samples_whose_top_token_is_the_target():
  logits = jnp.array([[0.0, 5.0, 1.0], [9.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
  relevant = jnp.array([[False, True, False], [False, False, True], [False, False, False]])
  valid = jnp.array([[True, True, True], [False, True, True], [True, True, True]])
  # Sample 0 hits; sample 1's top valid token (2) is the target once token 0 is masked; sample 2
  # has no target and does not count.
  assert float(base_model._pointer_hit(logits, relevant, valid)) == 1.0
  logits = logits.at[1, 1].set(5.0)  # now sample 1 points at a visible non-target token
  assert float(base_model._pointer_hit(logits, relevant, valid)) == 0.5


def test_pointer_loss_is_uniform_cross_entropy_over_visible_targets():
  logits = jnp.zeros((1, 4))
  relevant = jnp.array([[True, True, False, False]])
  valid = jnp.array([[True, True, True, False]])
  np.testing.assert_allclose(float(base_model.pointer_loss(logits, relevant, valid)), np.log(3.0), rtol=1e-5)


def test_finder_loss_is_minus_log_target_mass():
  attention = jnp.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
  target = jnp.array([[True, True, False], [False, False, False]])  # sample 1: no target, not counted
  np.testing.assert_allclose(float(base_model.finder_loss(attention, target)), -np.log(0.75), rtol=1e-5)
