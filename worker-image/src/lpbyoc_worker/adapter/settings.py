"""Everything one adapter instance is configured with (from the command line and AUTH_TOKEN)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .imaging import ImageLimits


@dataclass(frozen=True)
class AdapterSettings:
    model_id: str
    capability: str = ""
    pipeline: str = "image-to-image"
    # The runtime task the Triton model serves (None: the single-tensor TorchScript filter).
    task: str | None = None
    host: str = "0.0.0.0"
    port: int = 8000
    capacity: int = 1
    max_body_bytes: int = 16 * 1024 * 1024
    limits: ImageLimits = field(default_factory=ImageLimits)
    # Bearer token the orchestrator sends; None disables the check.
    auth_token: str | None = None
    drain_seconds: float = 25.0
    ready_poll_seconds: float = 1.0
    # At most this many decoded live frames wait for the model; older ones are dropped.
    max_pending_frames: int = 2
    # ai-runner routes wait for a slot (go-livepeer cannot read a 503): at most this many wait,
    # each at most queue_timeout seconds, else a 500 with a message.
    queue_size: int = 16
    queue_timeout: float = 120.0
    max_images_per_prompt: int = 8
    max_audio_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if self.max_pending_frames < 1:
            raise ValueError("max_pending_frames must be at least 1")
        if self.queue_size < 0:
            raise ValueError("queue_size must not be negative")
        if self.queue_timeout <= 0:
            raise ValueError("queue_timeout must be positive")
        if self.max_images_per_prompt < 1:
            raise ValueError("max_images_per_prompt must be at least 1")
