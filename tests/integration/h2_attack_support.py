"""For the HTTP/2 attack tests: what an attack costs sluice (CPU seconds and RSS growth
from /proc), the figures kept per attack, and a sender that writes an attack's bytes from
a second thread while the test reads (or does not)."""
import os
import socket
import threading
import time

from harness_http import proc_status_kib, reset_peak_rss


def cpu_seconds(pid):
    """User + system CPU time of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cost:
    """CPU seconds and RSS growth of a process over a `with` block: .cpu, .rss_kib (growth of
    the peak, VmHWM, when the kernel lets the peak be reset; else of VmRSS at the end)."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.rss0 = proc_status_kib(self.pid, "VmRSS")
        self.peak = reset_peak_rss(self.pid)
        self.cpu0 = cpu_seconds(self.pid)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.sample()

    def sample(self):
        self.cpu = cpu_seconds(self.pid) - self.cpu0
        self.wall = time.monotonic() - self.t0
        field = "VmHWM" if self.peak else "VmRSS"
        self.rss_kib = proc_status_kib(self.pid, field) - self.rss0
        return self

    def __str__(self):
        return f"cpu={self.cpu:.2f}s rss_growth={self.rss_kib / 1024:.1f}MiB wall={self.wall:.2f}s"


def record_figures(attack, text):
    """Prints one attack's figures and keeps them, one line per attack, in
    $SLUICE_BUILD_DIR/h2_attacks.txt (a line for the same attack is replaced)."""
    line = f"{attack}: {text}"
    print(line)
    build = os.environ.get("SLUICE_BUILD_DIR")
    if not build or not os.path.isdir(build):
        return
    path = os.path.join(build, "h2_attacks.txt")
    try:
        with open(path) as f:
            lines = [l.rstrip("\n") for l in f if not l.startswith(attack + ": ")]
    except FileNotFoundError:
        lines = []
    lines.append(line)
    with open(path + ".new", "w") as f:
        f.write("\n".join(sorted(lines)) + "\n")
    os.replace(path + ".new", path)


class Sender(threading.Thread):
    """Writes `data` to the connection's socket from a second thread, so that the test can
    read at the same time (or not at all); stops at the peer's close, at stop(), or when
    nothing could be written for `stall` seconds. .sent counts the bytes taken. While it
    runs, the connection must not send (H2Conn(..., replies=False))."""

    def __init__(self, conn, data, piece=1 << 16, stall=30):
        super().__init__(daemon=True)
        self.conn, self.data, self.piece, self.stall = conn, data, piece, stall
        self.sent = 0
        self.error = None
        self.stopping = threading.Event()

    def run(self):
        view = memoryview(self.data)
        last = time.monotonic()
        while self.sent < len(view) and not self.stopping.is_set():
            try:
                self.sent += self.conn.sock.send(view[self.sent:self.sent + self.piece])
                last = time.monotonic()
            except (socket.timeout, BlockingIOError):
                if time.monotonic() - last > self.stall:
                    self.error = "stalled"
                    return
            except OSError as e:
                self.error = type(e).__name__
                return

    def stop(self, timeout=30):
        self.stopping.set()
        self.join(timeout)
        assert not self.is_alive(), "the sender is still blocked"
        return self
