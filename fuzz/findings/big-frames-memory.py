#!/usr/bin/env python3
# W5 reproducer: N clients each try to send 99 MiB of a 100 MiB request frame and hold it.
# Before queued.max.request.bytes, the broker held every partial frame (~100 MiB of RSS per
# client: 8 clients took it from 6 to 798 MiB). Now each frame first takes its size from the
# broker-wide budget (default 256 MiB), so clients beyond the budget are simply not read
# (their sends block) and RSS stays below the budget plus a margin; a separate small client is
# still answered meanwhile.
#
# Run from the repo root after `cargo build --release`:
#   python3 fuzz/findings/big-frames-memory.py 8              # default budget (256 MiB)
#   python3 fuzz/findings/big-frames-memory.py 8 67108864     # --set queued.max.request.bytes=...
#   python3 fuzz/findings/big-frames-memory.py 8 -1           # unbounded, the old behaviour
import socket, struct, subprocess, sys, tempfile, threading, time

MiB = 1 << 20


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024


def api_versions_round_trip(port):
    started = time.time()
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        c.sendall(struct.pack(">ihhih", 10, 18, 0, 42, -1))
        head = b""
        while len(head) < 8:
            chunk = c.recv(8 - len(head))
            if not chunk:
                return "connection closed before the answer"
            head += chunk
    except socket.timeout:
        # Expected when one frame is bigger than the whole budget (see the start-up warning).
        return "not answered within 10 s"
    finally:
        c.close()
    assert struct.unpack(">i", head[4:8])[0] == 42
    return f"{(time.time() - started) * 1000:.1f} ms"


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    budget = sys.argv[2] if len(sys.argv) > 2 else None
    d = tempfile.mkdtemp()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    args = ["target/release/cairn", "--listen", f"127.0.0.1:{port}", "--data-dir", d]
    if budget is not None:
        args += ["--set", f"queued.max.request.bytes={budget}"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        print("budget:", budget or "default (268435456)")
        print("rss start MiB", rss(p.pid))
        sent = [0] * n
        conns = []
        chunk = b"\0" * MiB

        def big_sender(i):
            c = socket.create_connection(("127.0.0.1", port))
            conns.append(c)
            c.settimeout(2)  # a send blocked this long: the broker is not reading us
            try:
                c.sendall(struct.pack(">i", 100 * MiB))
                for _ in range(99):
                    c.sendall(chunk)
                    sent[i] += 1
            except (socket.timeout, OSError):
                pass

        threads = [threading.Thread(target=big_sender, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        time.sleep(1)
        held = rss(p.pid)
        full = sum(1 for x in sent if x == 99)
        print(f"rss with {n} clients each trying to send 99 MiB of a 100 MiB frame: {held} MiB "
              f"({full} clients got all 99 MiB out; MiB sent per client: {sent})")
        print(f"ApiVersions round trip meanwhile: {api_versions_round_trip(port)}")
        for c in conns:
            c.close()
        time.sleep(1)
        print(f"after the big senders disconnected: rss {rss(p.pid)} MiB, ApiVersions round trip "
              f"{api_versions_round_trip(port)}")
    finally:
        p.kill()
        p.wait()


main()
