"""The embedded filesystem broker: a message file is visible to consumers only once it is whole."""

from __future__ import annotations

from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from workers.broker import EMBEDDED_SCHEME, AtomicFilesystemTransport, broker_settings
from workers.settings import load_settings


def test_a_message_being_written_is_not_taken_and_a_whole_one_is(tmp_path: Path) -> None:
    conf = broker_settings(load_settings(state_dir=tmp_path))
    assert conf["broker_url"] == f"{EMBEDDED_SCHEME}://"
    folder = Path(conf["broker_transport_options"]["data_folder_in"])
    with Connection(conf["broker_url"], transport_options=conf["broker_transport_options"]) as conn:
        assert isinstance(conn.transport, AtomicFilesystemTransport)
        queue = conn.SimpleQueue("jobs")
        # What kombu's own writer leaves for a moment: the file exists, the bytes do not yet.
        (folder / "1_00000000-0000-4000-8000-000000000000.jobs.msg.part").write_bytes(b"")
        with pytest.raises(Empty):
            queue.get(timeout=0.3)
        queue.put({"n": 1})
        assert [p.name.endswith(".msg") for p in folder.iterdir() if ".part" not in p.name] == [True]
        message = queue.get(timeout=2)
        assert message.payload == {"n": 1}
        message.ack()
        queue.close()
