"""Twilio: segment counting, the error table, request parameters, and the provider's specifics."""

from __future__ import annotations

import pytest
from conftest import make_sms
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.twilio_server import TwilioServer
from workers.errors import ConfigurationError, GiveUp, ProviderMisconfigured, RetryLater
from workers.providers.twilio import (
    ERROR_CODES,
    GSM7_BASIC,
    GSM7_EXTENSION,
    RedirectingHttpClient,
    Segments,
    TwilioProvider,
    build_create_params,
    classify,
    segments,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", Segments(1, "GSM-7")),
        ("a" * 160, Segments(1, "GSM-7")),
        ("a" * 161, Segments(2, "GSM-7")),
        ("a" * 306, Segments(2, "GSM-7")),
        ("a" * 307, Segments(3, "GSM-7")),
        ("€" * 80, Segments(1, "GSM-7")),  # extension characters cost two septets: 160
        ("€" * 81, Segments(2, "GSM-7")),
        ("a" * 159 + "€", Segments(2, "GSM-7")),  # 161 septets
        # 152 septets then an escape pair: the pair may not straddle segments.
        ("a" * 152 + "{" + "a" * 10, Segments(2, "GSM-7")),
        ("ü" * 160, Segments(1, "GSM-7")),  # ü is in the basic table
        ("ú" * 70, Segments(1, "UCS-2")),  # ú is not
        ("ú" * 71, Segments(2, "UCS-2")),
        ("ú" * 134, Segments(2, "UCS-2")),
        ("ú" * 135, Segments(3, "UCS-2")),
        ("😀" * 35, Segments(1, "UCS-2")),  # surrogate pairs: 70 code units
        ("😀" * 36, Segments(2, "UCS-2")),
        ("a" * 66 + "😀" + "a" * 10, Segments(2, "UCS-2")),  # the pair is not split at unit 67
    ],
)
def test_segments(body: str, expected: Segments) -> None:
    assert segments(body) == expected


def _reference_segments(body: str) -> Segments:
    """Segments counted one character at a time, as a plain reading of the rules."""

    def pack(costs: list[int], single: int, multi: int) -> int:
        if sum(costs) <= single:
            return 1
        count, used = 1, 0
        for cost in costs:
            if used + cost > multi:
                count, used = count + 1, 0
            used += cost
        return count

    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in body):
        return Segments(pack([2 if ch in GSM7_EXTENSION else 1 for ch in body], 160, 153), "GSM-7")
    return Segments(pack([2 if ord(ch) > 0xFFFF else 1 for ch in body], 70, 67), "UCS-2")


# Long runs of few kinds of character, so bodies cross the segment boundaries often.
_CHARACTERS = st.sampled_from(["a", " ", "€", "{", "ü", "ú", "😀", "\ud800", "\n"])


@settings(max_examples=400, deadline=None, database=None)
@given(
    body=st.one_of(
        st.text(_CHARACTERS, max_size=400),
        st.lists(st.tuples(_CHARACTERS, st.integers(0, 200)), max_size=4).map(
            lambda runs: "".join(ch * n for ch, n in runs)
        ),
        st.text(max_size=200),
    )
)
def test_segments_agree_with_counting_each_character(body: str) -> None:
    assert segments(body) == _reference_segments(body)


def test_gsm_tables_have_the_standard_sizes() -> None:
    # 128 code points minus the escape code; 10 extension characters that are sendable text.
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10


@pytest.mark.parametrize("code", [21211, 21408, 21610, 21614, 21617])
def test_refusals_give_up(code: int) -> None:
    assert classify(400, code).action == "give_up"


def test_table_actions() -> None:
    assert classify(401, 20003).action == "misconfigured"
    assert classify(429, 20429).action == "retry"
    assert classify(500, None).action == "retry"
    assert classify(503, 20500).action == "retry"
    assert classify(400, 12345).action == "retry"  # unknown codes retry; the budget bounds them
    assert classify(401, None).action == "misconfigured"
    assert set(ERROR_CODES) >= {20003, 20429, 21211, 21408, 21610, 21614, 21617}


def test_create_params_from_number_or_messaging_service() -> None:
    assert build_create_params(make_sms()) == {
        "to": "+447700900123",
        "body": "Your code is 123456",
        "from_": "+15005550006",
    }
    service = "MG" + "b" * 32
    assert build_create_params(make_sms(from_number=service)) == {
        "to": "+447700900123",
        "body": "Your code is 123456",
        "messaging_service_sid": service,
    }


def test_rewrite_keeps_the_path_and_query() -> None:
    client = RedirectingHttpClient("http://127.0.0.1:9999/prefix")
    try:
        assert client.rewrite("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1") == (
            "http://127.0.0.1:9999/prefix/2010-04-01/Accounts/AC1/Messages.json?x=1"
        )
    finally:
        client.close()


def _provider(server: TwilioServer) -> TwilioProvider:
    return TwilioProvider(server.account_sid, server.auth_token, base_url=server.base_url)


def test_form_fields_and_basic_auth_on_the_wire(twilio_server: TwilioServer) -> None:
    provider = _provider(twilio_server)
    receipt = provider.send_sms(make_sms(body="Grüße — ok"))
    provider.close()
    [received] = twilio_server.accepted
    assert received.path == f"/2010-04-01/Accounts/{twilio_server.account_sid}/Messages.json"
    assert received.form == {"To": "+447700900123", "From": "+15005550006", "Body": "Grüße — ok"}
    assert received.request.headers["Authorization"].startswith("Basic ")
    assert receipt.provider_message_id is not None and receipt.provider_message_id.startswith("SM")
    assert receipt.detail == {"segments": 1, "encoding": "UCS-2"}


def test_messaging_service_goes_in_its_own_field(twilio_server: TwilioServer) -> None:
    service = "MG" + "c" * 32
    provider = _provider(twilio_server)
    provider.send_sms(make_sms(from_number=service))
    provider.close()
    [received] = twilio_server.accepted
    assert received.form == {
        "To": "+447700900123",
        "MessagingServiceSid": service,
        "Body": "Your code is 123456",
    }


def test_long_body_is_refused_before_calling(twilio_server: TwilioServer) -> None:
    provider = _provider(twilio_server)
    with pytest.raises(GiveUp) as caught:
        provider.send_sms(make_sms(body="a" * 1601))
    # Emoji count as two UTF-16 units toward the limit, as Twilio counts them.
    with pytest.raises(GiveUp):
        provider.send_sms(make_sms(body="😀" * 801))
    provider.send_sms(make_sms(body="a" * 1600))
    provider.close()
    assert caught.value.code == "21617"
    assert len(twilio_server.received) == 1


def test_server_refusals_are_redacted(twilio_server: TwilioServer) -> None:
    provider = _provider(twilio_server)
    with pytest.raises(GiveUp) as caught:
        provider.send_sms(make_sms(to_number="07700 900123"))
    provider.close()
    assert caught.value.code == "21211"
    assert "900123" not in str(caught.value)


def test_unknown_account_is_misconfigured(twilio_server: TwilioServer) -> None:
    provider = TwilioProvider("AC" + "9" * 32, twilio_server.auth_token, base_url=twilio_server.base_url)
    with pytest.raises(ProviderMisconfigured):
        provider.send_sms(make_sms())
    provider.close()


def test_unreachable_server_is_transient() -> None:
    with TwilioServer() as server:
        assert isinstance(server, TwilioServer)
        sid, token, url = server.account_sid, server.auth_token, server.base_url
    provider = TwilioProvider(sid, token, base_url=url, timeout=0.5)
    with pytest.raises(RetryLater) as caught:
        provider.send_sms(make_sms())
    provider.close()
    assert caught.value.code == "connection"


def test_missing_credentials_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        TwilioProvider("", "")


def test_connections_are_kept_alive(twilio_server: TwilioServer) -> None:
    provider = _provider(twilio_server)
    for _ in range(4):
        provider.send_sms(make_sms())
    provider.close()
    assert len(twilio_server.accepted) == 4
    assert twilio_server.connections_opened == 1
