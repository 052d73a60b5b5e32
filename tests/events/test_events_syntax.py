"""Address, number, SID and URL syntax tables."""

from __future__ import annotations

import pytest

from workers.events.syntax import is_e164, is_email_address, is_messaging_service_sid, is_web_url


@pytest.mark.parametrize(
    "value",
    [
        "a@b.co",
        "user.name+tag@example.com",
        "o'brien@example.ie",
        "x_y-z@sub.example.co.uk",
        "!#$%&'*+/=?^_`{|}~-@example.org",
        "ana@bücher.example",
        "ana@xn--bcher-kva.example",
        "1@1a.example",
        "a" * 64 + "@example.com",
    ],
)
def test_valid_email_addresses(value: str) -> None:
    assert is_email_address(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        "@example.com",
        "a@",
        "a@b",
        "a@localhost",
        "a@b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a..b@example.com",
        '"quoted"@example.com',
        "ünï@example.com",
        "a b@example.com",
        "a@exa mple.com",
        "a@example.com.",
        "a@-example.com",
        "a@example-.com",
        "a@exa_mple.com",
        "a@192.0.2.1",
        "a@[192.0.2.1]",
        "a@example.123",
        "a" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
        "a@" + ".".join(["b" * 63] * 4) + ".com",
        "a@example.com\n",
        "Ana <a@example.com>",
    ],
)
def test_invalid_email_addresses(value: str) -> None:
    assert not is_email_address(value)


@pytest.mark.parametrize("value", ["+12345678", "+4915112345678", "+123456789012345", "+14155550199"])
def test_valid_e164(value: str) -> None:
    assert is_e164(value)


@pytest.mark.parametrize(
    "value",
    ["", "+", "+1234567", "+1234567890123456", "+0123456789", "4915112345678", "+49 151 12345678",
     "+4915112345678\n", "+\u0664\u0669\u0661\u0665\u0661\u0661\u0662\u0663\u0664\u0665", "+49-151-1234567"],
)  # fmt: skip
def test_invalid_e164(value: str) -> None:
    assert not is_e164(value)


def test_messaging_service_sid() -> None:
    assert is_messaging_service_sid("MG9752274e9e519418a7406176694466fa")
    assert is_messaging_service_sid("MG9752274E9E519418A7406176694466FA")
    assert not is_messaging_service_sid("MG9752274e9e519418a7406176694466f")
    assert not is_messaging_service_sid("PN9752274e9e519418a7406176694466fa")
    assert not is_messaging_service_sid("MG9752274e9e519418a7406176694466fag")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://app.example.com/x?y=1#z", True),
        ("http://example.com", True),
        ("HTTPS://EXAMPLE.COM/", True),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("//example.com/x", False),
        ("/relative/path", False),
        ("https:///nohost", False),
        ("https://exa mple.com", False),
        ("https://example.com/\n", False),
        ("http://[::1", False),
        ("ftp://example.com/file", False),
    ],
)
def test_web_urls(value: str, ok: bool) -> None:
    assert is_web_url(value) is ok
