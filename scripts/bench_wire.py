"""A minimal Kafka wire-protocol client for scripts/bench: just enough to create
topics, wait for partitions to be served and time a broker's start-up, without
starting a JVM for each call.

It speaks only non-flexible request versions that both Apache Kafka 4.x and
Cairn accept: ApiVersions v0, CreateTopics v2 and ListOffsets v1. It must not
depend on anything outside the Python standard library.
"""

import socket
import struct
import time

# Kafka error codes this module reports by name.
ERRORS = {
    0: "NONE",
    3: "UNKNOWN_TOPIC_OR_PARTITION",
    5: "LEADER_NOT_AVAILABLE",
    6: "NOT_LEADER_OR_FOLLOWER",
    7: "REQUEST_TIMED_OUT",
    36: "TOPIC_ALREADY_EXISTS",
    40: "INVALID_CONFIG",
}

LATEST = -1


class WireError(Exception):
    """A request could not be sent, or its answer could not be read."""


def _string(s):
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _nullable_string(s):
    if s is None:
        return struct.pack(">h", -1)
    return _string(s)


class _Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise WireError("response is shorter than its fields")
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values[0] if len(values) == 1 else values

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        if self.pos + n > len(self.buf):
            raise WireError("response string runs past the end")
        s = self.buf[self.pos : self.pos + n].decode(errors="replace")
        self.pos += n
        return s


class Connection:
    """One TCP connection to a broker; requests are sent one at a time."""

    def __init__(self, host, port, timeout=10.0):
        self.timeout = timeout
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise WireError(f"connect to {host}:{port}: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv_exact(self, n):
        chunks = []
        while n > 0:
            try:
                chunk = self.sock.recv(min(n, 1 << 20))
            except OSError as e:
                raise WireError(f"receive: {e}") from e
            if not chunk:
                raise WireError("connection closed by the broker")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def request(self, api_key, version, body):
        """Send one request (header v1) and return the response body (header v0 stripped)."""
        self.correlation_id += 1
        header = struct.pack(">hhi", api_key, version, self.correlation_id) + _string("cairn-bench")
        frame = header + body
        try:
            self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError as e:
            raise WireError(f"send: {e}") from e
        (size,) = struct.unpack(">i", self._recv_exact(4))
        if size < 4 or size > 256 << 20:
            raise WireError(f"implausible response size {size}")
        payload = self._recv_exact(size)
        (correlation_id,) = struct.unpack_from(">i", payload)
        if correlation_id != self.correlation_id:
            raise WireError(f"correlation id {correlation_id}, expected {self.correlation_id}")
        return payload[4:]

    def api_versions(self):
        """ApiVersions v0; returns the error code."""
        r = _Reader(self.request(18, 0, b""))
        return r.take(">h")

    def create_topics(self, topics, timeout_ms=30000):
        """CreateTopics v2. topics: [(name, partitions, {config: value})].

        Returns {name: (error_code, error_message)}.
        """
        body = struct.pack(">i", len(topics))
        for name, partitions, configs in topics:
            body += _string(name) + struct.pack(">ihi", partitions, 1, 0)
            body += struct.pack(">i", len(configs))
            for key, value in configs.items():
                body += _string(key) + _nullable_string(str(value))
        body += struct.pack(">ib", timeout_ms, 0)
        r = _Reader(self.request(19, 2, body))
        r.take(">i")  # throttle_time_ms
        out = {}
        for _ in range(r.take(">i")):
            name = r.string()
            code = r.take(">h")
            out[name] = (code, r.string())
        return out

    def list_offsets(self, partitions, timestamp=LATEST):
        """ListOffsets v1. partitions: {topic: [partition, ...]}.

        Returns {(topic, partition): (error_code, offset)}.
        """
        body = struct.pack(">ii", -1, len(partitions))
        for topic, parts in partitions.items():
            body += _string(topic) + struct.pack(">i", len(parts))
            for p in parts:
                body += struct.pack(">iq", p, timestamp)
        r = _Reader(self.request(2, 1, body))
        out = {}
        for _ in range(r.take(">i")):
            topic = r.string()
            for _ in range(r.take(">i")):
                partition, code, _ts, offset = r.take(">ihqq")
                out[(topic, partition)] = (code, offset)
        return out


def answers(port, host="127.0.0.1"):
    """True when the broker accepts a connection and answers ApiVersions without error."""
    try:
        with Connection(host, port, timeout=2.0) as c:
            return c.api_versions() == 0
    except (WireError, OSError):
        return False


def partitions_served(port, partitions, host="127.0.0.1"):
    """True when ListOffsets(latest) succeeds on every listed partition.

    Returns (ready, {(topic, partition): offset}) for the partitions that answered.
    """
    try:
        with Connection(host, port, timeout=5.0) as c:
            result = c.list_offsets(partitions)
    except (WireError, OSError):
        return False, {}
    wanted = sum(len(p) for p in partitions.values())
    offsets = {k: off for k, (code, off) in result.items() if code == 0}
    return len(offsets) == wanted, offsets


def wait_until(predicate, timeout, interval=0.02, what="condition"):
    """Poll predicate() until it returns a truthy value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def create_topic(port, name, partitions, configs=None, host="127.0.0.1", timeout=60.0):
    """Create a topic (an existing one is an error) and wait until every partition is served."""
    with Connection(host, port, timeout=timeout) as c:
        result = c.create_topics([(name, partitions, dict(configs or {}))], timeout_ms=int(timeout * 1000))
    code, message = result.get(name, (None, "no answer for the topic"))
    if code != 0:
        raise WireError(f"CreateTopics {name}: error {code} {ERRORS.get(code, '')} {message or ''}".strip())
    want = {name: list(range(partitions))}
    wait_until(lambda: partitions_served(port, want, host)[0], timeout, 0.05, f"{name} to be served")
