"""The Livepeer-facing adapter (`lpbyoc-worker serve`): BYOC jobs, the ai-runner API and
live video in front of Triton, on one aiohttp app."""
