"""Global rate limits shared by every worker process and machine: an atomic token bucket in Redis.

``NOTIFY_RATE_LIMITS`` names the limits, comma-separated, each ``NAME=COUNT/PERIOD[:BURST]``:

* ``NAME`` is a provider name (``mandrill``, ``smtp``, ``twilio``, ``outbox``) or ``sms-sender``,
  which applies to each SMS sender number on its own (a Twilio long code sends about one segment
  per second);
* ``COUNT/PERIOD`` is the sustained rate, ``PERIOD`` one of ``s``, ``m``, ``h`` (``50/s``, ``600/m``);
* ``BURST`` is how many may go at once after a quiet spell (default 1: sends are spaced evenly, so
  no window of any length sees more than ``1 + rate * length``).

Example: ``NOTIFY_RATE_LIMITS=mandrill=50/s,twilio=10/s,sms-sender=1/s``, with ``NOTIFY_REDIS_URL``.

The bucket lives in Redis and is updated by one Lua script, so concurrent workers can never both
take the last token; the script reads Redis's own clock, so machines with skewed clocks agree.
A refused caller is not told "try again when a token is back" (every refused caller would come
back at the same instant); it is given the next free slot in a virtual queue behind the callers
already refused, so retries arrive spread out at the limit's own pace.

When Redis cannot be reached the limiter lets the send through and logs a warning: the providers'
own limits (HTTP 429, Twilio's queue) are the backstop, and notifications keep flowing.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.errors import ConfigurationError
from workers.settings import Settings

log = structlog.get_logger("workers.ratelimit")

SMS_SENDER = "sms-sender"
PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_LIMIT = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9_-]*)=(?P<count>\d+(?:\.\d+)?)/(?P<period>[smh])(?::(?P<burst>\d+))?$"
)

# KEYS: one hash per bucket. ARGV[1]: the time in ms, or "" for Redis's own clock; then per key
# its rate (tokens per ms) and capacity. Either every bucket has a token and each gives one, or
# none gives any: an SMS must not spend the provider's token when its sender's bucket is empty.
# Returns {allowed, wait_ms, index of the limiting bucket (0 when allowed)}.
SCRIPT = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
else
  now = tonumber(ARGV[1])
end
local n = #KEYS
local tokens, stamps, queues, rates, caps = {}, {}, {}, {}, {}
local worst, worst_i = 0, 0
for i = 1, n do
  local rate = tonumber(ARGV[2 * i])
  local cap = tonumber(ARGV[2 * i + 1])
  local h = redis.call('HMGET', KEYS[i], 'tokens', 'ts', 'queue')
  local t = tonumber(h[1])
  local ts = tonumber(h[2])
  if t == nil or ts == nil then
    t = cap
    ts = now
  end
  if now > ts then
    t = math.min(cap, t + (now - ts) * rate)
    ts = now
  end
  tokens[i], stamps[i], queues[i], rates[i], caps[i] = t, ts, tonumber(h[3]) or 0, rate, cap
  if t < 1 then
    local wait = (1 - t) / rate
    if wait > worst then
      worst, worst_i = wait, i
    end
  end
end
local function keep(i, extra)
  local ttl = math.ceil((caps[i] - tokens[i]) / rates[i] + extra) + 1000
  redis.call('PEXPIRE', KEYS[i], ttl)
end
if worst_i == 0 then
  for i = 1, n do
    tokens[i] = tokens[i] - 1
    redis.call('HSET', KEYS[i], 'tokens', tokens[i], 'ts', stamps[i])
    keep(i, math.max(0, queues[i] - now))
  end
  return {1, 0, 0}
end
local i = worst_i
local slot = math.max(queues[i], now + worst)
redis.call('HSET', KEYS[i], 'tokens', tokens[i], 'ts', stamps[i], 'queue', slot + 1 / rates[i])
keep(i, slot + 1 / rates[i] - now)
return {0, math.ceil(slot - now), i}
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` sends per ``period`` seconds, at most ``burst`` at once."""

    count: float
    period: float
    burst: int = 1

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        unit = next(name for name, seconds in PERIODS.items() if seconds == self.period)
        return f"{self.count:g}/{unit}" + (f":{self.burst}" if self.burst != 1 else "")


def parse_limits(text: str) -> dict[str, Rate]:
    """``NOTIFY_RATE_LIMITS`` as a mapping of limit name to rate; ConfigurationError when malformed."""
    limits: dict[str, Rate] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _LIMIT.match(item.lower())
        if match is None:
            raise ConfigurationError(
                f"NOTIFY_RATE_LIMITS: cannot read {item!r}; write NAME=COUNT/PERIOD[:BURST], "
                "e.g. mandrill=50/s or sms-sender=1/s"
            )
        count = float(match["count"])
        burst = int(match["burst"] or 1)
        if count <= 0 or burst < 1:
            raise ConfigurationError(f"NOTIFY_RATE_LIMITS: {item!r} must allow at least one send")
        name = match["name"]
        if name in limits:
            raise ConfigurationError(f"NOTIFY_RATE_LIMITS: {name!r} is given twice")
        limits[name] = Rate(count, PERIODS[match["period"]], burst)
    return limits


@dataclass(frozen=True, slots=True)
class Verdict:
    """The limiter's answer: go now, or wait ``wait`` seconds because of limit ``limit``."""

    allowed: bool
    wait: float = 0.0
    limit: str | None = None


GO = Verdict(True)


@runtime_checkable
class WaitListener(Protocol):
    """Hears each refusal (the metrics observer counts them); must never raise."""

    def rate_limited(self, limit: str, wait: float) -> None: ...


class Limiter(Protocol):
    """What the rate-limited provider wrappers need."""

    def acquire(self, buckets: Sequence[tuple[str, str | None]]) -> Verdict: ...

    def close(self) -> None: ...


def sender_key(sender: str) -> str:
    """A Redis key part for an SMS sender that does not spell the number out."""
    return hashlib.sha256(b"notify-sms-sender:" + sender.encode("utf-8")).hexdigest()[:24]


class RedisRateLimiter:
    """Token buckets in Redis, one per configured limit (and per sender for ``sms-sender``)."""

    def __init__(
        self,
        client: redis.Redis,
        limits: Mapping[str, Rate],
        *,
        prefix: str = "notify:ratelimit",
        clock: Callable[[], float] | None = None,
        listener: WaitListener | None = None,
    ) -> None:
        self._client = client
        self.limits = dict(limits)
        self._prefix = prefix
        self._clock = clock  # None: Redis's clock, the one every machine shares
        self._listener = listener
        self._script: Any = client.register_script(SCRIPT)
        self._warn_lock = threading.Lock()
        self._last_warning = 0.0

    def key(self, limit: str, subkey: str | None) -> str:
        return f"{self._prefix}:{limit}" + (f":{sender_key(subkey)}" if subkey is not None else "")

    def acquire(self, buckets: Sequence[tuple[str, str | None]]) -> Verdict:
        """Take one token from every configured bucket named, or none; unconfigured names pass."""
        wanted = [(name, subkey) for name, subkey in buckets if name in self.limits]
        if not wanted:
            return GO
        keys = [self.key(name, subkey) for name, subkey in wanted]
        args: list[str] = ["" if self._clock is None else repr(self._clock() * 1000.0)]
        for name, _ in wanted:
            rate = self.limits[name]
            args += [repr(rate.per_second / 1000.0), str(rate.burst)]
        try:
            allowed, wait_ms, index = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            self._warn_unavailable(exc)
            return GO
        if allowed:
            return GO
        limit = wanted[int(index) - 1][0]
        verdict = Verdict(False, max(int(wait_ms), 1) / 1000.0, limit)
        if self._listener is not None:
            self._listener.rate_limited(limit, verdict.wait)
        return verdict

    def _warn_unavailable(self, exc: redis.RedisError) -> None:
        # At most one warning a minute: during an outage every send would otherwise log one.
        with self._warn_lock:
            now = time.monotonic()
            if now - self._last_warning < 60.0 and self._last_warning:
                return
            self._last_warning = now
        log.warning("ratelimit.unavailable", error_class=type(exc).__name__, action="sending unlimited")

    def close(self) -> None:
        self._client.close()


def build_limiter(settings: Settings, *, listener: WaitListener | None = None) -> RedisRateLimiter | None:
    """The shared limiter ``NOTIFY_RATE_LIMITS`` asks for, or None when no limit is set."""
    limits = parse_limits(settings.rate_limits)
    if not limits:
        return None
    if not settings.redis_url:
        raise ConfigurationError(
            "NOTIFY_RATE_LIMITS is set but NOTIFY_REDIS_URL is empty; the limits live in Redis"
        )
    client = redis.Redis.from_url(
        settings.redis_url,
        # Short timeouts: a slow Redis must not hold a send longer than the send itself takes.
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        # One quick reconnect (a connection dropped while idle), then fail open; never a backoff.
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )
    return RedisRateLimiter(client, limits, listener=listener)
