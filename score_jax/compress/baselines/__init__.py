"""Training-free token compressors behind one interface.

A *selector* keeps a static number k of the visual tokens:

    select(visual [B, T, P, d], k, *, key, extras) -> kept indices [B, k] (ascending = temporal order)

`extras` carries what some rules need (question embeddings, the generator's oracle scores, ...).
Uniform pooling is the one baseline that makes new tokens instead of selecting: see `uniform_pool.py`.
"""
from score_jax.compress.baselines.registry import SELECTORS, get_selector, register_selector  # noqa: F401
from score_jax.compress.baselines import random_keep, residual, oracle, random_stratified, density_peak, divprune, visionzip, vidcom2, fastv  # noqa: F401,E501  (registration)
