"""Generate the Triton model repository the worker serves from a cached Hugging Face snapshot."""
