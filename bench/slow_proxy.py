"""A TCP proxy on 127.0.0.1 that limits each connection's download rate (server to client),
for benchmarks that need a store slower per request than this machine's loopback: S3 serves
one GET at roughly 50-100 MB/s while a many-core machine processes input faster than that.

    python3 bench/slow_proxy.py UPSTREAM_HOST:PORT MB_PER_S    # prints the port it listens on

Uploads (client to server) pass unthrottled. Runs until killed.
"""

import asyncio
import sys
import time

CHUNK = 64 << 10


async def pump(reader, writer, rate):
    """Copies reader to writer, at most `rate` bytes per second (None: as fast as it comes)."""
    started, sent = time.monotonic(), 0
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main(upstream, rate):
    host, port = upstream.rsplit(":", 1)

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, None),
            pump(server_reader, client_writer, rate),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) * 1e6))
