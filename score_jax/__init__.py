"""score_jax: learned visual-token compression (SCORE, CaCoVID) for frozen video LLMs in JAX."""

__version__ = "0.1.0"
