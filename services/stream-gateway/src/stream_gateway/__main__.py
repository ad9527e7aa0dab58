"""`python -m stream_gateway`: runs the gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from servicekit.logs import setup_logging
from stream_gateway.bootstrap import build

log = logging.getLogger("stream_gateway")


async def main() -> None:
    runtime = build()
    setup_logging(runtime.settings.service_name, runtime.settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runtime.start()
    log.info("listening", extra={"http": runtime.url})
    print(f"{runtime.settings.service_name} HTTP on {runtime.url}", flush=True)
    await stop.wait()
    log.info("stopping")
    await runtime.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # second Ctrl-C during shutdown
        sys.exit(130)
