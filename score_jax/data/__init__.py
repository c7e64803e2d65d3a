"""Real data: the JSONL dataset formats (videos, images), benchmark converters, video decoding,
LLaVA-OneVision preprocessing, the feature cache and grain iterators. The generated world lives in
`score_jax.world`."""
