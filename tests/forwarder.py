"""A TCP forwarder for tests that run processes in network namespaces (tests/test_machine_lost.py):
``python -m tests.forwarder LISTEN_HOST:PORT=TARGET_HOST:PORT ...``, one listener per pair.

It prints "ready" once every listener is bound. A target that cannot be reached (a cut link)
leaves the client waiting, as a partition does: nothing is refused on the target's behalf.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def _handler(target_host: str, target_port: int):
    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, target_writer), _pipe(target_reader, client_writer))

    return forward


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def main(pairs: list[str]) -> None:
    servers = []
    for pair in pairs:
        listen, target = pair.split("=")
        host, port = _address(listen)
        servers.append(await asyncio.start_server(_handler(*_address(target)), host, port, backlog=1024, reuse_address=True))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
