"""Stage 1: learning a scene's objects once (placeholder tokens, masked textual inversion,
the cross-attention K/V fine-tune) and the concept that results, with its cache entry."""
