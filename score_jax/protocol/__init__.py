"""The evaluation protocol of the field (lmms-eval) as data: prompts, answer parsers, prompt dumps."""
