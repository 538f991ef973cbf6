"""A small in-process trickle server (the go-livepeer side of live video) for tests.

Follows go-livepeer's `trickle/README.md` as far as pytrickle uses it: channels at `/<name>`,
publishers `POST /<name>/<seq>` with a streamed body, subscribers `GET /<name>/<seq>` that stream
the segment while it is being written (`-1` = latest, `-2` = next to be written), `Lp-Trickle-Seq`
on answers, `Lp-Trickle-Closed` once `DELETE /<name>` closed the channel, 404 for unknown channels.
go-livepeer's own server is Go and cannot run here; this one keeps every segment (no 470 eviction).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Segment:
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False

    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class Channel:
    segments: dict[int, Segment] = field(default_factory=dict)
    closed: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    pending_reads: int = 0

    @property
    def next_seq(self) -> int:
        return max(self.segments, default=-1) + 1


class TrickleServer:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.app = web.Application()
        self.app.router.add_post("/{name}/{seq}", self._publish)
        self.app.router.add_get("/{name}/{seq}", self._subscribe)
        self.app.router.add_delete("/{name}", self._close)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def create(self, name: str) -> str:
        self.channels[name] = Channel()
        return f"{self.url}/{name}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        for channel in self.channels.values():
            await self._mark_closed(channel)
        if self._runner is not None:
            await self._runner.cleanup()

    async def close_channel(self, name: str) -> None:
        await self._mark_closed(self.channels[name])

    @staticmethod
    async def _mark_closed(channel: Channel) -> None:
        async with channel.changed:
            channel.closed = True
            channel.changed.notify_all()

    async def wait_for_reader(self, name: str) -> None:
        channel = self.channels[name]
        async with channel.changed:
            await asyncio.wait_for(channel.changed.wait_for(lambda: channel.pending_reads > 0), 30)

    async def wait_for_complete(self, name: str, seq: int) -> None:
        channel = self.channels[name]

        def complete() -> bool:
            segment = channel.segments.get(seq)
            return segment is not None and segment.complete

        async with channel.changed:
            await asyncio.wait_for(channel.changed.wait_for(complete), 30)

    def segment_data(self, name: str) -> list[bytes]:
        """Every segment's bytes so far, in order (the last one may still be growing)."""
        channel = self.channels[name]
        return [channel.segments[seq].data() for seq in sorted(channel.segments)]

    async def _publish(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["name"])
        if channel is None:
            return web.Response(status=404, text="no such channel")
        seq = int(request.match_info["seq"])
        if seq < 0:
            seq = channel.next_seq
        segment = Segment()
        async with channel.changed:
            channel.segments[seq] = segment
            channel.changed.notify_all()
        async for chunk in request.content.iter_any():
            async with channel.changed:
                segment.chunks.append(chunk)
                channel.changed.notify_all()
        async with channel.changed:
            segment.complete = True
            channel.changed.notify_all()
        return web.Response(status=200)

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        channel = self.channels.get(request.match_info["name"])
        if channel is None:
            return web.Response(status=404, text="no such channel")
        seq = int(request.match_info["seq"])
        if seq == -1:
            seq = max(channel.segments, default=0)
        elif seq < 0:
            seq = channel.next_seq
        try:
            async with channel.changed:
                channel.pending_reads += 1
                channel.changed.notify_all()
            async with channel.changed:
                await channel.changed.wait_for(lambda: seq in channel.segments or channel.closed)
                segment = channel.segments.get(seq)
            if segment is None:
                return web.Response(
                    status=200, headers={"Lp-Trickle-Closed": "terminate", "Lp-Trickle-Seq": str(seq)}
                )
            response = web.StreamResponse(status=200, headers={"Lp-Trickle-Seq": str(seq)})
            await response.prepare(request)
            sent = 0
            while True:
                async with channel.changed:
                    await channel.changed.wait_for(
                        lambda sent=sent: len(segment.chunks) > sent or segment.complete or channel.closed
                    )
                    new = segment.chunks[sent:]
                    done = segment.complete or channel.closed
                for chunk in new:
                    await response.write(chunk)
                sent += len(new)
                if done and sent == len(segment.chunks):
                    break
            await response.write_eof()
            return response
        finally:
            channel.pending_reads -= 1

    async def _close(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["name"])
        if channel is None:
            return web.Response(status=404)
        await self._mark_closed(channel)
        return web.Response(status=200)
