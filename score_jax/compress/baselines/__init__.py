"""Training-free token compressors behind one interface.

A *selector* keeps a static number k of the visual tokens:

    select(visual [B, T, P, d], k, *, key, extras) -> kept indices [B, k] (ascending = temporal order)

`extras` carries what some rules need (question embeddings, the generator's oracle scores, ...).
A *compressor* returns what the LLM sees, possibly new (merged or pooled) tokens:

    compress(visual [B, T, P, d], k, *, key, extras) -> Compressed(tokens [B, k, d], positions [B, k], valid [B, k])

(`score_jax/compress/compressed.py`). `get_compressor(name)` serves every registered method, a selector
wrapped to gather what it keeps. Compressors: uniform pooling (`uniform_pool.py`), VisionZip with its
merged contextual tokens (`visionzip.py`; its select-only variant is the selector "visionzip_select")
and FastVID (`fastvid.py`).
"""
from score_jax.compress.baselines.registry import (COMPRESSORS, SELECTORS, get_compressor, get_selector,  # noqa: F401
                                                   method_names, register_compressor, register_selector)
from score_jax.compress.baselines import random_keep, residual, oracle, random_stratified, density_peak, divprune, visionzip, vidcom2, fastv, uniform_pool, fastvid, random_novel  # noqa: F401,E501  (registration)
