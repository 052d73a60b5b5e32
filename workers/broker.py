"""Broker settings and the embedded filesystem transport; importing it changes nothing.

The scheme of the embedded broker is made known to kombu by ``broker_settings``, the one place
every connection's URL comes from, not by importing this module.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.json import dumps, loads

from workers.settings import Settings


def embedded_transport_options(state_dir: Path) -> dict[str, Any]:
    """Folders of the embedded filesystem broker; one shared folder makes it a real queue."""
    root = state_dir.resolve() / "broker"
    queue_dir = root / "queue"
    control = root / "control"
    processed = root / "processed"
    unacked = root / "unacked"
    for folder in (queue_dir, control, processed, unacked):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "control_folder": str(control),
        "processed_folder": str(processed),
        "store_processed": False,
        "polling_interval": 0.1,
        "unacked_folder": str(unacked),
    }


class _AtomicFilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel, made safe: whole files only, and a message gone only once acked.

    kombu writes each message in place; a consumer polling the folder can take the file while it
    is still empty, and then the worker dies on a JSON error and the message is lost (seen with a
    resend published while the worker was busy). Writing under a name no consumer matches
    (``….msg.part``) and renaming it, atomic within one folder, closes that window.

    kombu also deletes a message file the moment it hands the message out, so a worker killed
    before acking loses it (an event killed during intake had no row, no file, no log line). Here
    a delivered file moves to ``unacked/<host>-<pid>/`` and is deleted on ack; a reject or a
    recover puts it back in the queue; and any channel opened later moves the files of a process
    that is no longer alive back into the queue, so a restart redelivers what a SIGKILL left.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        folder = self.transport_options.get("unacked_folder")
        self._unacked_root = Path(folder) if folder else None
        self._held: dict[str, str] = {}  # delivery tag -> file in this process's unacked folder
        self._no_ack_queues: set[str] = set()
        if self._unacked_root is not None:
            _restore_orphans(self._unacked_root, Path(self.data_folder_in))

    # kombu's base and filesystem channels disagree on the parameter's name; we follow the caller.
    def _put(self, queue: Any, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(message).encode("utf-8"))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        if self._unacked_root is None:
            return super()._get(queue)
        wanted = f"{queue}.msg"
        held_dir = self._unacked_root / _owner()
        held_dir.mkdir(parents=True, exist_ok=True)
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.partition(".")[2] != wanted:
                continue
            held = held_dir / filename
            try:
                # Atomic within one file system: exactly one consumer wins the file.
                os.replace(os.path.join(self.data_folder_in, filename), held)
            except OSError:
                continue
            try:
                payload = loads(held.read_bytes())
                tag = payload["properties"]["delivery_tag"]
            except (OSError, ValueError, KeyError, TypeError):
                # Not a message we can read: set aside, never handed out again, never crashing.
                with contextlib.suppress(OSError):
                    os.replace(held, held.with_name(held.name + ".unreadable"))
                continue
            if queue in self._no_ack_queues:
                held.unlink(missing_ok=True)  # a no-ack consumer (events, remote control)
            else:
                self._held[str(tag)] = str(held)
            return payload
        raise Empty()

    def basic_consume(self, queue: Any, no_ack: Any, callback: Any, consumer_tag: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue: Any, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._forget(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._forget(delivery_tag)

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        # With requeue, kombu puts a copy back in the queue (``_restore``) before we drop ours.
        super().basic_reject(delivery_tag, requeue=requeue)
        self._forget(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)
        self._forget(message.delivery_tag)

    def _forget(self, delivery_tag: Any) -> None:
        path = self._held.pop(str(delivery_tag), None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _owner() -> str:
    """This process's unacked folder name; the pid is read each time, so a forked child has its own."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _alive(owner: str) -> bool:
    host, _, pid = owner.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's, or not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _restore_orphans(unacked_root: Path, queue_dir: Path) -> None:
    """Put back in the queue the unacked messages of processes that are gone."""
    try:
        owners = [entry for entry in unacked_root.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return
    for owner in owners:
        if _alive(owner.name):
            continue
        for held in owner.glob("*.msg"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(held, queue_dir / held.name)
        with contextlib.suppress(OSError):
            owner.rmdir()


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = _AtomicFilesystemChannel


EMBEDDED_SCHEME = "notify-filesystem"


def _register_embedded_transport() -> None:
    """Teach kombu the embedded scheme; idempotent, and done on use rather than on import."""
    TRANSPORT_ALIASES.setdefault(EMBEDDED_SCHEME, f"{__name__}:AtomicFilesystemTransport")


def broker_settings(settings: Settings) -> dict[str, Any]:
    """The broker URL and transport options for ``settings``, for Celery and plain kombu alike."""
    if settings.embedded_broker:
        # Every connection to the embedded broker is made from these settings, so naming the
        # scheme here is what lets kombu resolve it, in the worker, the CLI and tests alike.
        _register_embedded_transport()
        return {
            "broker_url": f"{EMBEDDED_SCHEME}://",
            "broker_transport_options": embedded_transport_options(settings.state_dir),
        }
    options: dict[str, Any] = {"broker_url": settings.broker_url}
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Late acks on Redis come back only after the visibility timeout; keep it above the
        # longest countdown we ever schedule (long waits go through the ledger instead).
        options["broker_transport_options"] = {"visibility_timeout": 3600}
    return options
