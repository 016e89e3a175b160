"""The status page in a real browser: headless Chromium loads it while a consumer group reprocesses
a topic from offset 0, slowly; the DOM shows the topic, the group's lag and its progress bar. The
screenshot is kept in $CAIRN_ARTIFACTS (scripts/test: target/test-artifacts/)."""

import json
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cairn_compat import TARGET, free_port, wait_until

RECORDS = 3000


def status(http: str) -> dict:
    with urllib.request.urlopen(f"http://{http}/v1/status", timeout=10) as r:
        return json.load(r)


def chromium(*args: str) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    out = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--window-size=1280,1024", *args],
        capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


@pytest.mark.skipif(TARGET != "cairn", reason="Cairn's own status page")
@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="chromium is not installed (scripts/test installs Debian's chromium package)")
def test_status_page_shows_a_reprocessing_group_in_a_browser(broker_with, topic_name, tmp_path):
    http = f"127.0.0.1:{free_port()}"
    broker = broker_with({"cairn.http.listen": http})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(topic_name, key=f"k{i}", value=f"value {i}")
    assert producer.flush(30) == 0

    # The reprocessing job: its group starts over from offset 0 and works slowly, committing
    # as it goes.
    group = f"reprocess-{topic_name}"
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})

    def reprocess():
        consumer.assign([TopicPartition(topic_name, 0, 0)])
        while not stop.is_set():
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                consumer.commit(message=m, asynchronous=False)
                stop.wait(0.05)
        consumer.close()

    job = threading.Thread(target=reprocess, daemon=True)
    job.start()
    try:
        def lag():
            g = next((g for g in status(http)["groups"] if g["group_id"] == group), None)
            return g and g["offsets"] and 0 < g["offsets"][0]["committed_offset"] and g["lag"]

        wait_until(lambda: lag() and lag() > 0, timeout=60, what="the group's first commits")
        dom = chromium("--dump-dom", f"http://{http}/")
        shots = Path(os.environ.get("CAIRN_ARTIFACTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        shot = shots / "status-page.png"
        chromium(f"--screenshot={shot}", f"http://{http}/")
    finally:
        stop.set()
        job.join(30)

    assert f"<td>{topic_name}-0</td>" in dom, dom
    row = dom.split(f"<tr id=\"group-{group}\">", 1)
    assert len(row) == 2, f"no row for {group}: {dom}"
    row = row[1].split("</tr>", 1)[0]
    lag_cell = row.split('<td class="lag">', 1)[1].split("</td>", 1)[0]
    assert 0 < int(lag_cell) < RECORDS, row
    assert 'class="bar"' in row, row
    percent = float(row.split('title="', 1)[1].split("%", 1)[0])
    assert 0 < percent < 100, row
    assert shot.stat().st_size > 1000, shot
