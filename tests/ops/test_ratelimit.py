"""The shared token bucket on a real Redis: spacing, bursts, the virtual queue, atomicity, wrappers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import redis

from tests.conftest import REDIS_URL
from workers.errors import ConfigurationError, RateLimited, RetryLater
from workers.messages import EmailMessage, Receipt, SmsMessage
from workers.providers.fallback import FallbackEmailProvider
from workers.providers.limited import RateLimitedEmailProvider, RateLimitedSmsProvider
from workers.ratelimit import Rate, RedisRateLimiter, Verdict, build_limiter, parse_limits
from workers.settings import load_settings


class Clock:
    """A hand-moved clock (seconds), passed to the script instead of Redis's own."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Waits:
    heard: list[tuple[str, float]] = field(default_factory=list)

    def rate_limited(self, limit: str, wait: float) -> None:
        self.heard.append((limit, wait))


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    from tests.conftest import require_service

    require_service("redis")
    conn = redis.Redis.from_url(REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    tag = f"notify-test:{uuid.uuid4().hex[:10]}"
    yield tag
    for key in client.scan_iter(f"{tag}:*"):
        client.delete(key)


def limiter(
    client: redis.Redis, prefix: str, spec: str, clock: Clock | None = None, **kw: object
) -> RedisRateLimiter:
    return RedisRateLimiter(client, parse_limits(spec), prefix=prefix, clock=clock, **kw)  # type: ignore[arg-type]


def test_parse_limits() -> None:
    assert parse_limits("mandrill=50/s, twilio=10/s,sms-sender=1/s") == {
        "mandrill": Rate(50, 1.0),
        "twilio": Rate(10, 1.0),
        "sms-sender": Rate(1, 1.0),
    }
    assert parse_limits("smtp=600/m:20") == {"smtp": Rate(600, 60.0, 20)}
    assert parse_limits("") == {}
    assert str(Rate(600, 60.0, 20)) == "600/m:20"
    for bad in ("mandrill", "mandrill=50", "mandrill=50/d", "mandrill=0/s", "a=1/s,a=2/s", "x=1/s:0"):
        with pytest.raises(ConfigurationError, match="NOTIFY_RATE_LIMITS"):
            parse_limits(bad)


def test_limits_without_redis_url_are_a_configuration_error() -> None:
    settings = load_settings(rate_limits="mandrill=5/s", redis_url="")
    with pytest.raises(ConfigurationError, match="NOTIFY_REDIS_URL"):
        build_limiter(settings)
    assert build_limiter(load_settings(rate_limits="", redis_url="")) is None


@pytest.mark.redis
def test_sends_are_spaced_at_the_rate(client: redis.Redis, prefix: str) -> None:
    clock = Clock()
    bucket = limiter(client, prefix, "mandrill=5/s", clock)
    assert bucket.acquire([("mandrill", None)]).allowed
    refused = bucket.acquire([("mandrill", None)])
    assert refused == Verdict(False, 0.2, "mandrill")
    clock.now += 0.1
    assert not bucket.acquire([("mandrill", None)]).allowed
    clock.now += 0.35  # 0.45 s after the first: the second token is back, the third not yet
    assert bucket.acquire([("mandrill", None)]).allowed
    assert not bucket.acquire([("mandrill", None)]).allowed


@pytest.mark.redis
def test_burst_allows_that_many_at_once(client: redis.Redis, prefix: str) -> None:
    clock = Clock()
    bucket = limiter(client, prefix, "smtp=10/s:3", clock)
    verdicts = [bucket.acquire([("smtp", None)]).allowed for _ in range(4)]
    assert verdicts == [True, True, True, False]
    clock.now += 10  # a long quiet spell refills only up to the burst
    verdicts = [bucket.acquire([("smtp", None)]).allowed for _ in range(4)]
    assert verdicts == [True, True, True, False]


@pytest.mark.redis
def test_refused_callers_get_successive_slots_not_the_same_instant(client: redis.Redis, prefix: str) -> None:
    clock = Clock()
    bucket = limiter(client, prefix, "twilio=10/s", clock)
    assert bucket.acquire([("twilio", None)]).allowed
    waits = [bucket.acquire([("twilio", None)]).wait for _ in range(4)]
    assert waits == [0.1, 0.2, 0.3, 0.4]
    # The first of them, back at its slot, gets the token.
    clock.now += 0.1
    assert bucket.acquire([("twilio", None)]).allowed


@pytest.mark.redis
def test_sender_and_provider_tokens_are_taken_together_or_not_at_all(
    client: redis.Redis, prefix: str
) -> None:
    clock = Clock()
    bucket = limiter(client, prefix, "twilio=10/s:2,sms-sender=1/s", clock)
    a, b, c = "+15550000001", "+15550000002", "+15550000003"
    assert bucket.acquire([("twilio", None), ("sms-sender", a)]).allowed
    again = bucket.acquire([("twilio", None), ("sms-sender", a)])
    assert (again.allowed, again.limit) == (False, "sms-sender")
    # A's refusal did not spend the provider's second token: B still gets it.
    assert bucket.acquire([("twilio", None), ("sms-sender", b)]).allowed
    third = bucket.acquire([("twilio", None), ("sms-sender", c)])
    assert (third.allowed, third.limit) == (False, "twilio")
    keys = b" ".join(client.scan_iter(f"{prefix}:*")).decode()
    assert "sms-sender" in keys
    for number in (a, b, c):
        assert number not in keys and number.lstrip("+") not in keys


@pytest.mark.redis
def test_concurrent_callers_never_share_the_last_token(client: redis.Redis, prefix: str) -> None:
    clock = Clock()  # frozen: no refill while the threads race
    bucket = limiter(client, prefix, "mandrill=1/s:5", clock)
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def take() -> None:
        start.wait()
        for _ in range(5):
            verdict = bucket.acquire([("mandrill", None)])
            with lock:
                results.append(verdict.allowed)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 100
    assert results.count(True) == 5


@pytest.mark.redis
def test_unconfigured_names_pass_and_refusals_are_heard(client: redis.Redis, prefix: str) -> None:
    waits = Waits()
    bucket = limiter(client, prefix, "twilio=1/s", Clock(), listener=waits)
    assert bucket.acquire([("mandrill", None), ("sms-sender", "+15550000001")]).allowed
    assert list(client.scan_iter(f"{prefix}:*")) == []
    bucket.acquire([("twilio", None)])
    bucket.acquire([("twilio", None)])
    assert waits.heard == [("twilio", 1.0)]


def test_an_unreachable_redis_lets_sends_through() -> None:
    bucket = build_limiter(load_settings(rate_limits="mandrill=1/s", redis_url="redis://127.0.0.1:1/0"))
    assert bucket is not None
    assert bucket.acquire([("mandrill", None)]).allowed
    assert bucket.acquire([("mandrill", None)]).allowed


# -- the provider wrappers ------------------------------------------------------------------------


class Refusing:
    """A limiter that refuses the names given, as the Redis one would when they are spent."""

    def __init__(self, *spent: str) -> None:
        self.spent = set(spent)
        self.asked: list[list[tuple[str, str | None]]] = []

    def acquire(self, buckets: list[tuple[str, str | None]]) -> Verdict:  # type: ignore[override]
        self.asked.append(list(buckets))
        for name, _ in buckets:
            if name in self.spent:
                return Verdict(False, 0.5, name)
        return Verdict(True)

    def close(self) -> None:
        pass


@dataclass
class Recording:
    name: str
    sent: list[str] = field(default_factory=list)

    def send_email(self, message: EmailMessage) -> Receipt:
        self.sent.append(message.notification_id)
        return Receipt(self.name, f"{self.name}-1")

    def send_sms(self, message: SmsMessage) -> Receipt:
        self.sent.append(message.notification_id)
        return Receipt(self.name, f"{self.name}-1")

    def close(self) -> None:
        pass


EMAIL = EmailMessage("n-1", "from@example.com", "to@example.com", "subject", text="body")
SMS = SmsMessage("n-2", "+15550000001", "+15550000009", "body")


def test_wrapper_raises_rate_limited_and_does_not_send() -> None:
    inner = Recording("mandrill")
    provider = RateLimitedEmailProvider(inner, Refusing("mandrill"))
    with pytest.raises(RateLimited) as caught:
        provider.send_email(EMAIL)
    assert caught.value.retry_after == 0.5 and caught.value.provider == "mandrill"
    assert inner.sent == []


def test_sms_wrapper_asks_for_provider_and_sender() -> None:
    inner = Recording("twilio")
    limits = Refusing()
    receipt = RateLimitedSmsProvider(inner, limits).send_sms(SMS)
    assert receipt.provider == "twilio" and inner.sent == ["n-2"]
    assert limits.asked == [[("twilio", None), ("sms-sender", "+15550000001")]]
    with pytest.raises(RateLimited):
        RateLimitedSmsProvider(inner, Refusing("sms-sender")).send_sms(SMS)


def test_a_chain_fails_over_when_the_first_provider_is_at_its_limit() -> None:
    first, second = Recording("mandrill"), Recording("smtp")
    chain = FallbackEmailProvider(
        [RateLimitedEmailProvider(first, Refusing("mandrill")), RateLimitedEmailProvider(second, Refusing())]
    )
    assert chain.send_email(EMAIL).provider == "smtp"
    both = FallbackEmailProvider(
        [
            RateLimitedEmailProvider(first, Refusing("mandrill")),
            RateLimitedEmailProvider(second, Refusing("smtp")),
        ]
    )
    # Only our own limits said no: still RateLimited, so the retry is not counted against the budget.
    with pytest.raises(RateLimited):
        both.send_email(EMAIL)
    assert issubclass(RateLimited, RetryLater)
