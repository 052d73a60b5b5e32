"""Runs one local provider server as a program: print its settings line, serve until SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Protocol


class Startable(Protocol):
    def start(self) -> object: ...

    def stop(self) -> None: ...


def serve_until_stopped(server: Startable, settings_line: Callable[[], str]) -> None:
    done = threading.Event()
    # Installed before the address is printed: a caller may stop us as soon as it reads it.
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    print(settings_line(), flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
