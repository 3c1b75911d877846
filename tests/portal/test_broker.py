"""The embedded broker (portal/broker.py): what a producer writes is taken whole, once."""

import threading

from kombu import Connection

from portal import broker


def _connection(folder, **options):
    return Connection(
        "filesystem://",
        transport="portal.broker:Transport",
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder.parent / f"{folder.name}-control"),
            **options,
        },
    )


def test_a_message_goes_through_whole(tmp_path):
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("q1")
        queue.put({"task": "sipsync.push_outbox", "ids": list(range(1000))})
        message = queue.get(timeout=2)
        message.ack()
        assert message.payload == {"task": "sipsync.push_outbox", "ids": list(range(1000))}
        assert conn.transport.polling_interval == broker.POLLING_INTERVAL
        queue.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".q1.msg")] == []


def test_a_message_still_being_written_is_not_taken(tmp_path):
    """kombu's own transport creates the file under its final name and writes it afterwards;
    a consumer looking in between read an empty file and the worker's consumer died."""
    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        partial = tmp_path / ".part-1_x.q2.msg"
        partial.write_bytes(b"")  # a producer in the middle of its write
        try:
            channel._get("q2")
            raise AssertionError("a message was taken from an empty folder")
        except broker.Empty:
            pass
        assert partial.exists()


def test_a_publish_to_a_missing_folder_fails_and_leaves_nothing(tmp_path):
    missing = tmp_path / "gone"
    with _connection(missing) as conn:
        try:
            conn.default_channel._put("q3", {"x": 1})
            raise AssertionError("the publish did not fail")
        except broker.ChannelError:
            pass
    assert list(tmp_path.iterdir()) == []


def test_concurrent_producers_and_consumers_take_each_message_exactly_once(tmp_path):
    count, taken, errors = 400, [], []
    lock = threading.Lock()
    done = threading.Event()

    def produce(start):
        with _connection(tmp_path) as conn:
            for i in range(start, count, 2):
                conn.default_channel._put("q4", {"n": i})

    def consume():
        try:
            with _connection(tmp_path) as conn:
                channel = conn.default_channel
                while not done.is_set() or any(p.name.endswith(".q4.msg") for p in tmp_path.iterdir()):
                    try:
                        payload = channel._get("q4")
                    except broker.Empty:
                        continue
                    with lock:
                        taken.append(payload["n"])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    consumers = [threading.Thread(target=consume) for _ in range(3)]
    producers = [threading.Thread(target=produce, args=(start,)) for start in (0, 1)]
    for thread in consumers + producers:
        thread.start()
    for thread in producers:
        thread.join()
    done.set()
    for thread in consumers:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(taken) == list(range(count))
