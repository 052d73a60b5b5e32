"""The retry policy, declared once: when to try again, and when a notification is dead."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by age.

    Attempt 1 failing waits about ``base`` seconds, attempt 2 about ``2*base``, and so on up to
    ``cap``; a provider's Retry-After wins when it asks for longer. Jitter spreads a burst of
    failures so they do not all come back in the same second.
    """

    max_attempts: int = 8
    max_age: float = 86400.0
    base: float = 2.0
    cap: float = 900.0
    jitter: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            max_age=settings.max_age,
            base=settings.retry_base,
            cap=settings.retry_cap,
        )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling: float = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        # Half fixed, half random: never sooner than half the step, never two in lockstep.
        wait = ceiling / 2 + float(self.jitter(0.0, ceiling / 2))
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, self.max_age)
        return wait

    def next_delay(self, attempt: int, age: float, retry_after: float | None = None) -> float | None:
        """The wait before the next attempt, or None when the budget is spent (the row is dead)."""
        if attempt >= self.max_attempts:
            return None
        wait = self.delay(attempt, retry_after)
        if age + wait > self.max_age:
            return None
        return wait
