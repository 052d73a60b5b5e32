"""Signature functions against known vectors: Mandrill's computed by hand (openssl), Twilio's from its SDK."""

from __future__ import annotations

from workers.providers import mandrill_webhooks, twilio_callbacks

MANDRILL_URL = "https://hooks.example.com/webhooks/mandrill"
KEY = b"whk-test-key-0123"


def test_mandrill_signature_matches_the_documented_algorithm() -> None:
    # printf '%s' 'https://hooks.example.com/webhooks/mandrillmandrill_events[]' \
    #   | openssl dgst -sha1 -hmac 'whk-test-key-0123' -binary | base64
    assert mandrill_webhooks.signature(KEY, MANDRILL_URL, [("mandrill_events", "[]")]) == (
        "/fJA3eT7y2U9CAmNUk8q1FEElRk="
    )


def test_mandrill_signature_sorts_the_post_keys() -> None:
    # The same, over url + "aa1" + 'mandrill_events[{"event":"send"}]' + "zz2": keys sorted.
    params = [("zz", "2"), ("mandrill_events", '[{"event":"send"}]'), ("aa", "1")]
    assert mandrill_webhooks.signature(KEY, MANDRILL_URL, params) == "lp0cvkfh+MTfyMoQkZPYZhSNyCI="


def test_mandrill_signature_valid_refuses_missing_wrong_key_and_other_url() -> None:
    params = [("mandrill_events", "[]")]
    good = "/fJA3eT7y2U9CAmNUk8q1FEElRk="
    assert mandrill_webhooks.signature_valid(KEY, MANDRILL_URL, params, good)
    assert not mandrill_webhooks.signature_valid(KEY, MANDRILL_URL, params, None)
    assert not mandrill_webhooks.signature_valid(KEY, MANDRILL_URL, params, "")
    assert not mandrill_webhooks.signature_valid(b"another-key-0123", MANDRILL_URL, params, good)
    assert not mandrill_webhooks.signature_valid(KEY, MANDRILL_URL + "/", params, good)
    assert not mandrill_webhooks.signature_valid(KEY, MANDRILL_URL, [("mandrill_events", "[ ]")], good)
    assert not mandrill_webhooks.signature_valid(b"", MANDRILL_URL, params, good)


def test_twilio_signature_the_sdk_documentation_example() -> None:
    # Twilio's published example (Webhooks security page; twilio-python's own test).
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert twilio_callbacks.signature_valid("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not twilio_callbacks.signature_valid("12346", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not twilio_callbacks.signature_valid(
        "12345", url, {**params, "Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert not twilio_callbacks.signature_valid("12345", url, params, None)
    assert not twilio_callbacks.signature_valid("", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
