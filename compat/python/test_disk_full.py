"""A real full disk (issue 6, storage faults), with the real binary and a real client.

Cairn's data directory lives on a small tmpfs. A filler file takes almost all of it, then a
confluent-kafka producer (acks=all, no retries, so each failure surfaces) writes until the disk is
full. Cairn must refuse what it cannot store with KAFKA_STORAGE_ERROR and acknowledge nothing it
did not store; consumers keep reading meanwhile; an offset commit is acknowledged only if stored; once the filler is deleted, writes and commits succeed again without a
restart; and after a kill -9 every acknowledged record is still at its offset, exactly once, and
the last acknowledged commit is there.

Needs root to mount a tmpfs (the CI machine runs as root); skipped, visibly, where mount is refused.
"""

import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import TARGET, Broker

pytestmark = pytest.mark.skipif(TARGET != "cairn", reason="needs a broker whose disk we control")

DISK_MB = 24
VALUE = 16 * 1024


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def read_all(bootstrap, topic, group):
    """{offset: value} of the whole partition, from its start to the high watermark."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        got = {}
        deadline = time.monotonic() + 60
        while len(got) < high - low and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                assert m.error() is None, m.error()
                assert m.offset() not in got, f"offset {m.offset()} delivered twice"
                got[m.offset()] = m.value()
        assert len(got) == high - low, f"read {len(got)} of {high - low} records"
        return got
    finally:
        c.close()


def produce(bootstrap, topic, values):
    """Produces one record per request; returns ({offset: value} acknowledged, [errors])."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "retries": 0,
                  "enable.idempotence": False, "message.timeout.ms": 20000})
    acked, errors = {}, []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            errors.append(err)

    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=on_delivery)
        p.flush(30)
    assert p.flush(30) == 0
    return acked, errors


def test_full_disk_refuses_writes_keeps_reads_and_recovers_when_space_returns(tmp_path, small_disk):
    work = tmp_path / "broker"
    work.mkdir()
    (work / "data").symlink_to(small_disk)
    broker = Broker("cairn", work)
    broker.start()
    try:
        topic = "full-" + uuid.uuid4().hex[:8]
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": str(1 << 20)})],
                            operation_timeout=30)[topic].result(timeout=30)
        before, errors = produce(broker.bootstrap, topic, [os.urandom(VALUE) for _ in range(20)])
        assert not errors and len(before) == 20
        group = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-" + topic,
                          "enable.auto.commit": False})
        group.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)

        # Take all but ~1 MiB of the disk, then write 3 MiB more: the disk fills up.
        filler = small_disk / "filler"
        st = os.statvfs(small_disk)
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - (1 << 20)))
        during, errors = produce(broker.bootstrap, topic, [os.urandom(VALUE) for _ in range(192)])
        assert errors, "the disk never filled up"
        codes = {e.code() for e in errors}
        assert codes == {KafkaError.KAFKA_STORAGE_ERROR}, [str(e) for e in errors]

        # Reads go on while the disk is full, and show exactly what was acknowledged.
        stored = read_all(broker.bootstrap, topic, "reader-1")
        assert stored == {**before, **during}
        # An offset commit is acknowledged only if stored (a small record may still fit in a
        # page the offsets log already has, even on a full disk).
        fd = os.open(small_disk / "filler-rest", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        try:
            group.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
            last_commit = 7
        except KafkaException:
            last_commit = 5
        assert group.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == last_commit

        # Space returns: writes succeed again, without a restart.
        filler.unlink()
        (small_disk / "filler-rest").unlink()
        deadline = time.monotonic() + 30
        while True:
            after, errors = produce(broker.bootstrap, topic, [os.urandom(VALUE) for _ in range(10)])
            if not errors or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not errors, [str(e) for e in errors]
        assert min(after) == max(stored) + 1, "the log continues right after the last stored record"
        group.commit(offsets=[TopicPartition(topic, 0, 9)], asynchronous=False)
        group.close()

        # A crash afterwards keeps every acknowledged record, once, at its offset.
        broker.proc.kill()
        broker.proc.wait(10)
        broker.stop()
        broker.start()
        assert read_all(broker.bootstrap, topic, "reader-2") == {**before, **during, **after}
        group = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-" + topic})
        assert group.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 9
        group.close()
    finally:
        broker.stop()
