"""The embedded default: a tiny LLaVA-OneVision video LLM trained by the project on the generated world."""
