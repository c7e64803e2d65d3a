"""The frozen video LLM: Qwen2 decoder, SigLIP vision tower, LLaVA-OneVision glue, loading and sharding."""
