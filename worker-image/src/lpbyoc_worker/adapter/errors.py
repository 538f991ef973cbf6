"""Client-visible errors: every failure leaves as `{"detail": {"msg": ...}}`, the ai-runner shape."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web


class RequestError(Exception):
    """A failure the client is told about, with the status and message it gets."""

    def __init__(self, status: int, msg: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.headers = dict(headers or {})


def error_response(status: int, msg: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": {"msg": msg}}, status=status, headers=headers)
