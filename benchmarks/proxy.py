"""A tiny TCP proxy for benchmarks: forwards 127.0.0.1:<port> to a Redis server, delaying
every chunk in each direction by a fixed time, and counting what passes.

    python -m benchmarks.proxy --target-port 6390 --latency-ms 1 [--count-commands]

Each direction of each connection has its own delay queue: a chunk read at t is written
at t + latency, in order, while later chunks are already being read, so connections are
not serialised and a pipelined stream keeps its throughput (a request/reply round trip
costs 2 x latency more). With --latency-ms 0 chunks are forwarded at once.

It counts, over all connections: round trips (a client chunk that follows a reply, or
opens a connection: one request/reply exchange, however many commands it pipelines; with
--count-commands a chunk that continues a half-sent command never starts one, which keeps
a long pipeline that Redis starts answering before it is all sent from counting twice),
bytes and chunks each way, and with --count-commands the top-level commands clients send
(parsed from RESP; a pipeline of 100 commands is 100 commands, an FCALL is one command
whatever its script calls).

The first line it prints is `PORT <proxy port> CONTROL <control port>`. A client of the
control port sends one line: `stats` (a JSON line of the counters back), `reset` (zero
them) or `stop`. It stops by itself after --max-seconds, when --parent-pid is gone, on
SIGTERM/SIGINT, or on `stop`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import sys
from typing import Any


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.connections = 0
        self.round_trips = 0
        self.chunks_up = self.chunks_down = 0
        self.bytes_up = self.bytes_down = 0
        self.commands = 0
        self.by_command: collections.Counter[str] = collections.Counter()

    def as_dict(self) -> dict[str, Any]:
        return {"connections": self.connections, "round_trips": self.round_trips,
                "chunks_up": self.chunks_up, "chunks_down": self.chunks_down,
                "bytes_up": self.bytes_up, "bytes_down": self.bytes_down,
                "commands": self.commands, "by_command": dict(self.by_command)}


class RespCounter:
    """Counts the commands in a client's RESP stream (arrays of bulk strings, or inline
    commands), fed in arbitrary chunks."""

    __slots__ = ("buf", "counters")  # buf: the start of a command still being sent

    def __init__(self, counters: Counters) -> None:
        self.buf = bytearray()
        self.counters = counters

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, n = 0, len(buf)
        while pos < n:
            if buf[pos] != 42:  # not '*': an inline command, one line
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                words = bytes(buf[pos:end]).split()
                if words:
                    self._count(words[0])
                pos = end + 2
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            items = int(buf[pos + 1:end])
            p, name, complete = end + 2, b"", True
            for i in range(items):
                if p >= n:
                    complete = False
                    break
                end = buf.find(b"\r\n", p)
                if end < 0:
                    complete = False
                    break
                size = int(buf[p + 1:end])
                start = end + 2
                if start + size + 2 > n:
                    complete = False
                    break
                if i == 0:
                    name = bytes(buf[start:start + size])
                p = start + size + 2
            if not complete:
                break
            if items > 0:
                self._count(name)
            pos = p
        del buf[:pos]

    def _count(self, name: bytes) -> None:
        self.counters.commands += 1
        self.counters.by_command[name.decode("latin-1").lower()] += 1


class Proxy:
    def __init__(self, target_host: str, target_port: int, latency_s: float, count_commands: bool) -> None:
        self.target = (target_host, target_port)
        self.latency = latency_s
        self.count_commands = count_commands
        self.counters = Counters()
        self.stopped = asyncio.Event()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counters.connections += 1
        state = {"replied": True}  # True: the next client chunk starts a round trip
        parser = RespCounter(self.counters) if self.count_commands else None
        c = self.counters

        def on_up(data: bytes) -> None:
            c.chunks_up += 1
            c.bytes_up += len(data)
            if state["replied"] and not (parser is not None and parser.buf):
                c.round_trips += 1
                state["replied"] = False
            if parser is not None:
                parser.feed(data)

        def on_down(data: bytes) -> None:
            c.chunks_down += 1
            c.bytes_down += len(data)
            state["replied"] = True

        try:
            await asyncio.gather(self.pump(client_r, server_w, on_up), self.pump(server_r, client_w, on_down),
                                 return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the proxy is stopping

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_chunk: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.latency <= 0:
                while data := await reader.read(262144):
                    on_chunk(data)
                    writer.write(data)
                    await writer.drain()
                return
            queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

            async def read_side() -> None:
                try:
                    while data := await reader.read(262144):
                        on_chunk(data)
                        queue.put_nowait((loop.time() + self.latency, data))
                finally:
                    queue.put_nowait(None)

            reading = asyncio.create_task(read_side())
            try:
                while (item := await queue.get()) is not None:
                    due, data = item
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    writer.write(data)
                    await writer.drain()
            finally:
                reading.cancel()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except (OSError, RuntimeError):  # already closed, or the loop is closing
                pass

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await reader.readline()).decode().strip()
            if line == "stats":
                writer.write(json.dumps(self.counters.as_dict()).encode() + b"\n")
            elif line == "reset":
                self.counters.reset()
                writer.write(b"ok\n")
            elif line == "stop":
                writer.write(b"ok\n")
                self.stopped.set()
            else:
                writer.write(b"error: send stats, reset or stop\n")
            await writer.drain()
        finally:
            writer.close()


async def serve(args: argparse.Namespace) -> None:
    proxy = Proxy(args.target_host, args.target_port, args.latency_ms / 1000, args.count_commands)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port)
    control = await asyncio.start_server(proxy.control, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cport = control.sockets[0].getsockname()[1]
    print(f"PORT {port} CONTROL {cport}", flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proxy.stopped.set)
    deadline = loop.time() + args.max_seconds
    while not proxy.stopped.is_set() and loop.time() < deadline:
        if args.parent_pid and not _alive(args.parent_pid):
            break
        try:
            await asyncio.wait_for(proxy.stopped.wait(), 0.5)
        except TimeoutError:
            pass
    server.close()
    control.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target-host", default="127.0.0.1")
    p.add_argument("--target-port", type=int, required=True)
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay of each chunk, each direction")
    p.add_argument("--count-commands", action="store_true", help="parse RESP to count client commands")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long")
    p.add_argument("--parent-pid", type=int, default=0, help="stop when this process is gone")
    args = p.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
