"""`notify deliveries show` lists receipts, `deliveries list --status delivered` filters, and
`notify suppressions list|add|remove` hashes what it is given and never prints it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.factories import basic_email, parsed
from workers.cli import main
from workers.ledger import Ledger, make_engine
from workers.ledger.migrate import upgrade
from workers.ledger.receipts import ReceiptBook
from workers.messages import Channel, Receipt
from workers.receipts import DeliveryReceipt, ReceiptEffect

ADDRESS = "Someone.Private@Example.org"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for key in list(os.environ):
        if key.startswith(("NOTIFY_", "MANDRILL_", "SMTP_", "TWILIO_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NOTIFY_DATABASE_URL", url)
    monkeypatch.setenv("NOTIFY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NOTIFY_SUPPRESSION_KEY", "x" * 32)
    engine = make_engine(url)
    upgrade(engine)
    yield Ledger(engine)
    engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def delivered(ledger: Ledger) -> str:
    event = parsed(basic_email())
    ledger.accept(event, queued=True)
    claim = ledger.claim(event.notification_id)
    assert claim is not None
    ledger.record_sent(claim, Receipt("mandrill", "m-cli"))
    ReceiptBook(ledger.engine).record(
        [
            DeliveryReceipt(
                "mandrill",
                f"ev-{n}",
                "m-cli",
                Channel.EMAIL,
                raw,
                effect,
                datetime(2026, 12, 8, 12, n, tzinfo=UTC),
                error_code=code,
            )
            for n, (raw, effect, code) in enumerate(
                [("deferral", ReceiptEffect.NONE, "4.2.2"), ("delivered", ReceiptEffect.DELIVERED, None)]
            )
        ]
    )
    return event.notification_id


def test_show_lists_receipts_and_list_filters_by_the_new_statuses(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    nid = delivered(ledger)
    code, out, _ = run(capsys, "deliveries", "show", nid)
    assert code == 0
    lines = out.splitlines()
    at = lines.index("            receipts:")
    assert lines[at + 1].split() == ["2026-12-08T12:00:00.000Z", "mandrill", "deferral", "none", "4.2.2"]
    assert lines[at + 2].split() == ["2026-12-08T12:01:00.000Z", "mandrill", "delivered", "delivered"]
    code, out, _ = run(capsys, "deliveries", "show", nid, "--json")
    assert [r["raw_status"] for r in json.loads(out)["receipts"]] == ["deferral", "delivered"]
    code, out, _ = run(capsys, "deliveries", "list", "--status", "delivered", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [nid]
    code, out, _ = run(capsys, "deliveries", "list", "--status", "bounced", "--json")
    assert (code, out) == (0, "")


def test_suppressions_add_list_remove_never_print_the_address(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    code, added, err = run(capsys, "suppressions", "add", ADDRESS, "--reason", "complaint")
    assert code == 0 and added.endswith(": added\n")
    # Another spelling is the same entry.
    assert run(capsys, "suppressions", "add", ADDRESS.lower())[1].endswith(": already on the list\n")
    run(capsys, "suppressions", "add", "+1 (415) 555-0100")
    code, listed, _ = run(capsys, "suppressions", "list", "--json")
    rows = [json.loads(line) for line in listed.splitlines()]
    assert sorted((r["channel"], r["reason"], r["source"]) for r in rows) == [
        ("email", "complaint", "operator"),
        ("sms", "manual", "operator"),
    ]
    code, table, _ = run(capsys, "suppressions", "list")
    everything = added + listed + table + err
    assert "someone" not in everything.lower() and "example.org" not in everything.lower()
    assert "5550100" not in everything
    code, out, _ = run(capsys, "suppressions", "remove", ADDRESS)
    assert code == 0 and out.endswith(": removed\n")
    code, out, _ = run(capsys, "suppressions", "remove", ADDRESS)
    assert code == 1 and out.endswith(": was not on the list\n")


def test_suppressions_list_pages_with_signed_tokens(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(5):
        run(capsys, "suppressions", "add", f"+1415555010{n}")
    seen: list[str] = []
    token: str | None = None
    while True:
        args = ["suppressions", "list", "--json", "--page-size", "2"]
        code, out, _ = run(capsys, *args, *(["--page-token", token] if token else []))
        assert code == 0
        rows = [json.loads(line) for line in out.splitlines()]
        token = rows[-1].get("next_page_token")
        seen += [r["recipient_key"] for r in rows if "recipient_key" in r]
        if token is None:
            break
    assert len(seen) == len(set(seen)) == 5
    code, _, err = run(capsys, "suppressions", "list", "--page-token", "made.up")
    assert code == 2 and err.startswith("notify: --page-token:")


def test_an_unusable_recipient_is_refused_without_echoing_it(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "suppressions", "add", "no-at-sign-secret", "--channel", "email")
    assert code == 2 and "no-at-sign-secret" not in out + err
    assert "is not an email address" in err
