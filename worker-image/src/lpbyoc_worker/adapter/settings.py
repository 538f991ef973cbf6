"""Everything one adapter instance is configured with (from the command line and AUTH_TOKEN)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .imaging import ImageLimits


@dataclass(frozen=True)
class AdapterSettings:
    model_id: str
    capability: str = ""
    pipeline: str = "image-to-image"
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

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if self.max_pending_frames < 1:
            raise ValueError("max_pending_frames must be at least 1")
