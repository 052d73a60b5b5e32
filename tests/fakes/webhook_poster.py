"""Posts a fake provider's webhooks from one background thread, in order, retrying refused posts.

The local Mandrill and Twilio servers hand their signed form posts here; like the real providers,
a post answered with anything but 2xx (or not answered) is tried again a few times, then given up
and recorded as such.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class Posted:
    """One webhook as it ended: the last HTTP status (None: never answered) after ``attempts`` tries."""

    url: str
    form: tuple[tuple[str, str], ...]
    status: int | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class _Job:
    url: str
    form: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    delay: float


class WebhookPoster:
    """One thread, one keep-alive client; ``wait_idle`` returns once everything queued has ended."""

    def __init__(self, *, retries: int = 3, retry_delay: float = 0.2, timeout: float = 10.0) -> None:
        self.retries = retries
        self.retry_delay = retry_delay
        self._client = httpx.Client(timeout=timeout)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._posted: list[Posted] = []
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="WebhookPoster", daemon=True)
        self._thread.start()

    def post(
        self,
        url: str,
        form: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        *,
        delay: float = 0.0,
    ) -> None:
        """Queue one form POST; ``delay`` seconds pass before it is sent (a slow provider)."""
        with self._lock:
            self._pending += 1
        self._jobs.put(_Job(url, tuple(form), dict(headers), delay))

    @property
    def posted(self) -> list[Posted]:
        with self._lock:
            return list(self._posted)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Whether every queued post has ended (answered or given up) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        self._stopping.set()
        self._jobs.put(None)
        self._thread.join(timeout=5)
        self._client.close()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.delay:
                self._stopping.wait(job.delay)
            status: int | None = None
            attempts = 0
            while attempts <= self.retries and not self._stopping.is_set():
                attempts += 1
                try:
                    answer = self._client.post(job.url, data=dict(job.form), headers=dict(job.headers))
                    status = answer.status_code
                except httpx.HTTPError:
                    status = None
                if status is not None and 200 <= status < 300:
                    break
                self._stopping.wait(self.retry_delay)
            with self._idle:
                self._posted.append(Posted(job.url, job.form, status, attempts))
                self._pending -= 1
                self._idle.notify_all()
