"""The local servers themselves: validation as the real APIs do it, control API, program entry points."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.http_base import Status
from tests.fakes.mandrill_server import MandrillServer
from tests.fakes.twilio_server import TwilioServer

ROOT = Path(__file__).resolve().parents[2]
# One client for the module: building a client (and its TLS context) per request costs ~0.1 s each.
HTTP = httpx.Client(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    HTTP.close()


def _send(server: MandrillServer, body: object) -> httpx.Response:
    return HTTP.post(server.api_url + "/messages/send.json", json=body)


def test_mandrill_validates_key_and_fields(mandrill_server: MandrillServer) -> None:
    good = {"from_email": "a@b.example", "to": [{"email": "c@d.example", "type": "to"}]}
    reply = _send(mandrill_server, {"key": "nope", "message": good})
    assert reply.status_code == 500 and reply.json()["name"] == "Invalid_Key"
    reply = _send(mandrill_server, {"message": good})
    assert reply.json()["name"] == "ValidationError"
    reply = _send(
        mandrill_server, {"key": "test-key", "message": {**good, "to": [{"email": "not-an-address"}]}}
    )
    assert reply.json()["name"] == "ValidationError"
    reply = _send(mandrill_server, {"key": "test-key", "message": {**good, "to": []}})
    assert reply.json()["name"] == "ValidationError"
    reply = _send(mandrill_server, {"key": "test-key", "message": good})
    assert reply.status_code == 200
    [result] = reply.json()
    assert result["status"] == "sent" and result["email"] == "c@d.example" and result["_id"]
    assert len(mandrill_server.accepted) == 1 and len(mandrill_server.received) == 5


def test_twilio_validates_auth_and_fields(twilio_server: TwilioServer) -> None:
    url = f"{twilio_server.base_url}/2010-04-01/Accounts/{twilio_server.account_sid}/Messages.json"
    auth = (twilio_server.account_sid, twilio_server.auth_token)
    assert (
        HTTP.post(
            url,
            data={"To": "+15005550009", "From": "+15005550006", "Body": "x"},
            auth=(twilio_server.account_sid, "bad"),
        ).json()["code"]
        == 20003
    )
    cases = [
        ({"From": "+15005550006", "Body": "x"}, 21604),
        ({"To": "555-1234", "From": "+15005550006", "Body": "x"}, 21211),
        ({"To": "+15005550009", "Body": "x"}, 21603),
        ({"To": "+15005550009", "From": "+15005550006"}, 21602),
        ({"To": "+15005550009", "From": "+15005550006", "Body": "x" * 1601}, 21617),
    ]
    for form, code in cases:
        reply = HTTP.post(url, data=form, auth=auth)
        assert reply.status_code == 400
        assert reply.json()["code"] == code
        assert reply.json()["more_info"].endswith(str(code))
    reply = HTTP.post(url, data={"To": "+15005550009", "From": "+15005550006", "Body": "ok"}, auth=auth)
    assert reply.status_code == 201 and reply.json()["sid"].startswith("SM")
    header = (
        "Basic "
        + base64.b64encode(f"{twilio_server.account_sid}:{twilio_server.auth_token}".encode()).decode()
    )
    assert twilio_server.accepted[0].request.headers["Authorization"] == header


def test_control_api_scripts_faults(mandrill_server: MandrillServer) -> None:
    control = mandrill_server.root_url + "/_control/"
    assert (
        HTTP.post(
            control + "fail",
            json={
                "faults": [
                    {"kind": "error", "name": "PaymentRequired"},
                    {"kind": "status", "status": 429, "retry_after": 3},
                ]
            },
        ).status_code
        == 200
    )
    good = {"key": "test-key", "message": {"from_email": "a@b.example", "to": [{"email": "c@d.example"}]}}
    assert _send(mandrill_server, good).json()["name"] == "PaymentRequired"
    throttled = _send(mandrill_server, good)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert _send(mandrill_server, good).status_code == 200
    received = HTTP.get(control + "received").json()
    assert [item["status"] for item in received] == [500, 429, 200]
    assert [item["accepted"] for item in received] == [False, False, True]
    # A poller in another process reads only what is new (the benchmarks do).
    assert HTTP.get(control + "received?since=2").json() == received[2:]
    HTTP.post(control + "reset")
    assert HTTP.get(control + "received").json() == []


def test_failure_rate_is_seeded_and_reproducible() -> None:
    outcomes = []
    for _ in range(2):
        with MandrillServer() as server:
            assert isinstance(server, MandrillServer)
            server.set_failure_rate(error_rate=0.3, seed=42)
            good = {
                "key": "test-key",
                "message": {"from_email": "a@b.example", "to": [{"email": "c@d.example"}]},
            }
            outcomes.append([_send(server, good).status_code for _ in range(30)])
    assert outcomes[0] == outcomes[1]
    assert 500 in outcomes[0] and 200 in outcomes[0]


def test_status_fault_in_twilio_format(twilio_server: TwilioServer) -> None:
    twilio_server.fail_next(Status(503, retry_after=2))
    url = f"{twilio_server.base_url}/2010-04-01/Accounts/{twilio_server.account_sid}/Messages.json"
    reply = HTTP.post(
        url,
        data={"To": "+15005550009", "From": "+15005550006", "Body": "x"},
        auth=(twilio_server.account_sid, twilio_server.auth_token),
    )
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "2"
    assert set(reply.json()) == {"code", "message", "more_info", "status"}


@pytest.mark.parametrize(
    ("module", "prefix"),
    [
        ("tests.fakes.mandrill_server", "MANDRILL_BASE_URL="),
        ("tests.fakes.twilio_server", "TWILIO_BASE_URL="),
        ("tests.fakes.smtp_server", "SMTP_HOST="),
    ],
)
def test_servers_run_as_programs(module: str, prefix: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0"], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(prefix), line
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0
