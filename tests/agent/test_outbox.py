"""The durable outbox: order, seq, bounds with counted drops, set-aside."""

from __future__ import annotations

from schoolmon.agent.outbox import Outbox


def probe(seq: int) -> dict:
    return {"run": "r1", "seq": seq, "kind": "https", "ok": True}


def test_items_survive_reopening_in_order_with_their_seq(tmp_path):
    """Queued items and the seq counter persist across closing and reopening."""
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as outbox:
        first = outbox.allocate_seq(3)
        outbox.put_many("probe", [probe(first + i) for i in range(3)])

    with Outbox(path) as outbox:
        batch = outbox.next_batch(max_probes=1000)
        next_seq = outbox.allocate_seq()

    assert [(i.kind, i.seq, i.payload) for i in batch] == [
        ("probe", 1, probe(1)),
        ("probe", 2, probe(2)),
        ("probe", 3, probe(3)),
    ]
    assert next_seq == 4


def test_database_uses_wal_and_full_sync(tmp_path):
    """The queue file is in WAL mode with synchronous FULL."""
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        modes = (
            outbox._db.execute("PRAGMA journal_mode").fetchone()[0],
            outbox._db.execute("PRAGMA synchronous").fetchone()[0],
        )

    assert modes == ("wal", 2)


def test_batches_hold_at_most_max_probes_in_order(tmp_path):
    """A batch stops at the probe limit; other kinds keep their place in order."""
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        outbox.put_many("probe", [probe(s) for s in (1, 2)])
        outbox.put("speedtest", {"seq": 3, "ok": False}, 3)
        outbox.put_many("probe", [probe(s) for s in (4, 5)])

        batch = outbox.next_batch(max_probes=3)

    assert [(i.kind, i.seq) for i in batch] == [
        ("probe", 1),
        ("probe", 2),
        ("speedtest", 3),
        ("probe", 4),
    ]


def test_new_inventory_replaces_the_queued_one(tmp_path):
    """Only the newest inventory waits in the queue; that is not counted as a drop."""
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        outbox.put("inventory", {"hash": "a"})
        outbox.put("probe", probe(1), 1)
        outbox.put("inventory", {"hash": "b"})

        batch = outbox.next_batch(1000)
        stats = outbox.stats()

    assert [(i.kind, i.payload) for i in batch] == [
        ("probe", probe(1)),
        ("inventory", {"hash": "b"}),
    ]
    assert stats["dropped_total"] == {"probes": 0}


def test_over_the_bound_oldest_probes_go_first_and_are_counted(tmp_path):
    """Past max_items, the oldest probe samples are dropped and counted; others stay."""
    with Outbox(tmp_path / "o.sqlite3", max_items=100) as outbox:
        outbox.put("speedtest", {"seq": 0}, 0)
        outbox.put_many("probe", [probe(s) for s in range(1, 131)])

        batch = outbox.next_batch(1000)
        stats = outbox.stats()

    assert [i.seq for i in batch] == [0, *range(32, 131)]
    assert stats["outbox_items"] == 100
    assert stats["dropped_total"] == {"probes": 31}


def test_byte_bound_drops_oldest_probes(tmp_path):
    """Past max_bytes, oldest probes are dropped until the queue fits."""
    big = "x" * 400_000
    with Outbox(tmp_path / "o.sqlite3", max_bytes=1_000_000) as outbox:
        for seq in range(1, 5):
            outbox.put("probe", {"seq": seq, "pad": big}, seq)

        seqs = [i.seq for i in outbox.next_batch(1000)]
        stats = outbox.stats()

    assert seqs == [3, 4]
    assert stats["dropped_total"] == {"probes": 2}
    assert stats["outbox_bytes"] <= 1_000_000


def test_set_aside_item_leaves_the_queue_and_is_counted(tmp_path):
    """An item set aside is kept in its own table, counted, and never batched again."""
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        outbox.put_many("probe", [probe(s) for s in (1, 2, 3)])
        bad = outbox.next_batch(1000)[1]

        outbox.set_aside(bad, 422, "422 probe seq 2 fails validation")

        remaining = [i.seq for i in outbox.next_batch(1000)]
        rows = outbox.set_aside_rows()
        total = outbox.stats()["set_aside_total"]

    assert remaining == [1, 3]
    assert rows == [
        {
            "kind": "probe",
            "seq": 2,
            "status": 422,
            "reason": "422 probe seq 2 fails validation",
        }
    ]
    assert total == 1


def test_unicode_payloads_are_stored_byte_exact(tmp_path):
    """Non-ASCII text comes back exactly as queued."""
    payload = {
        "hash": "h",
        "programs": ["Bộ gõ tiếng Việt Unikey 4.3", "КриптоПро CSP"],
    }
    with Outbox(tmp_path / "o.sqlite3") as outbox:
        outbox.put("inventory", payload)
        stored = outbox.next_batch(1000)[0].payload

    assert stored == payload
