"""Weights prefetch: pin a Hugging Face revision, download it resumably into the cache, verify, mark complete."""
