"""The client side of benches/edge_flood.sh: a crowd of idle and slow clients on one proxy.

For one proxy (its port, and the PID whose RSS is summed with its children's):
  1. RSS at rest, the baseline;
  2. IDLE connections, each sends one GET, reads the answer and stays open (idle keep-alive);
  3. SLOW connections, each sends a request head one byte a second and never ends it;
  4. with all of them open, PROBES new clients one after the other: connect, GET, answer,
     close; the time of each (from a thread of its own, on blocking sockets);
  5. waits until the proxy has closed every slow client, or SLOW_WAIT seconds after they were
     opened, then probes again (idle connections only);
  6. closes everything, waits SETTLE seconds, RSS again.
RSS is sampled every 0.25 s throughout for the peak. Prints one block per proxy, and a
`result` line of key=value pairs for the table.
"""
import argparse
import asyncio
import socket
import statistics
import sys
import time

sys.path.insert(0, "benches/lib")
from proc_rss import rss_kb, settled_rss  # noqa: E402

GET = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 100000


def probe(port, timeout):
    """One new client's request: connect, GET, the whole answer, close; ms, or None."""
    t = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(GET)
            got = b""
            while b"ok\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                got += chunk
    except OSError:
        return None
    return (time.perf_counter() - t) * 1000


def probes(port, n, timeout):
    times = [probe(port, timeout) for _ in range(n)]
    ok = sorted(t for t in times if t is not None)
    return ok, n - len(ok)


def describe(ok, failed):
    if not ok:
        return f"all {failed} failed"
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
    return (f"p50 {statistics.median(ok):.2f} ms, p99 {p99:.2f} ms, max {ok[-1]:.2f} ms"
            f" ({len(ok)} answered, {failed} failed)")


class Crowd:
    def __init__(self, port):
        self.port = port
        self.idle = []  # (reader, writer)
        self.idle_closed = 0
        self.slow_open = 0
        self.slow_closed = []  # seconds from connect to the proxy's close
        self.slow_answered = 0  # got bytes (a 408) before the close
        self.slow_failed = 0  # could not connect
        self.tasks = []

    async def open_idle(self, gate):
        async with gate:
            r, w = await asyncio.open_connection("127.0.0.1", self.port)
            w.write(GET)
            got = b""
            while b"ok\n" not in got:
                chunk = await r.read(4096)
                if not chunk:
                    raise SystemExit("idle client: closed before the answer")
                got += chunk
        self.idle.append((r, w))
        self.tasks.append(asyncio.create_task(self.watch_idle(r)))

    async def watch_idle(self, r):
        try:
            while await r.read(4096):
                pass
        except OSError:
            pass
        self.idle_closed += 1

    async def slow(self, gate, opened):
        try:
            async with gate:
                r, w = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.slow_failed += 1
            opened.set()
            return
        start = time.monotonic()
        self.slow_open += 1
        opened.set()
        answered = False
        try:
            for i in range(len(SLOW_HEAD)):
                w.write(SLOW_HEAD[i:i + 1])
                try:
                    chunk = await asyncio.wait_for(r.read(4096), 1.0)
                except asyncio.TimeoutError:
                    continue
                if not chunk:
                    break
                answered = True
                while await r.read(4096):
                    pass
                break
        except OSError:
            pass
        self.slow_closed.append(time.monotonic() - start)
        self.slow_answered += answered
        w.close()

    def close(self):
        for _, w in self.idle:
            w.close()
        for t in self.tasks:
            t.cancel()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=50)
    ap.add_argument("--slow-wait", type=float, default=45)
    ap.add_argument("--settle", type=float, default=5)
    a = ap.parse_args()
    pid, loop = a.pid, asyncio.get_running_loop()
    peak = [0]

    async def sample():
        while True:
            peak[0] = max(peak[0], rss_kb(pid))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    crowd = Crowd(a.port)
    gate = asyncio.Semaphore(100)
    base = await loop.run_in_executor(None, settled_rss, pid)
    t = time.monotonic()
    await asyncio.gather(*(crowd.open_idle(gate) for _ in range(a.idle)))
    idle_open_s = time.monotonic() - t
    r_idle = await loop.run_in_executor(None, settled_rss, pid)

    slow_start = time.monotonic()
    opened = [asyncio.Event() for _ in range(a.slow)]
    crowd.tasks += [asyncio.create_task(crowd.slow(gate, e)) for e in opened]
    for e in opened:
        await e.wait()
    await asyncio.sleep(2)  # every slow client has sent a couple of bytes
    r_slow = await loop.run_in_executor(None, settled_rss, pid)
    crowd_ok, crowd_failed = await loop.run_in_executor(None, probes, a.port, a.probes, 10)
    at_probe_s = time.monotonic() - slow_start
    idle_closed_at_probe = crowd.idle_closed
    slow_closed_at_probe = len(crowd.slow_closed)
    while len(crowd.slow_closed) < crowd.slow_open and time.monotonic() - slow_start < a.slow_wait:
        await asyncio.sleep(0.25)
    waited = time.monotonic() - slow_start
    after_ok, after_failed = await loop.run_in_executor(None, probes, a.port, a.probes, 10)
    idle_closed = crowd.idle_closed
    crowd.close()
    await asyncio.sleep(a.settle)
    r_end = rss_kb(pid)
    sampler.cancel()

    closed = sorted(crowd.slow_closed)
    mb = lambda kb: kb / 1024
    print(f"{a.name}: baseline {mb(base):.1f} MB; {a.idle} idle keep-alive opened in "
          f"{idle_open_s:.1f} s: {mb(r_idle):.1f} MB ({(r_idle - base) / max(a.idle, 1):.1f} KB each);"
          f" {crowd.slow_open} slow-header open ({crowd.slow_failed} not connected): "
          f"{mb(r_slow):.1f} MB ({(r_slow - r_idle) / max(a.slow, 1):.1f} KB each); peak {mb(peak[0]):.1f} MB")
    print(f"  new clients, all open ({at_probe_s:.0f} s after the slow clients started; by then the proxy"
          f" had closed {slow_closed_at_probe} slow, {idle_closed_at_probe} idle): {describe(crowd_ok, crowd_failed)}")
    if closed:
        print(f"  slow clients closed by the proxy within {waited:.0f} s: {len(closed)} of {crowd.slow_open}"
              f" ({crowd.slow_answered} with an answer first), {closed[0]:.1f}–{closed[-1]:.1f} s after"
              f" connect (median {statistics.median(closed):.1f} s)")
    else:
        print(f"  slow clients closed by the proxy within {waited:.0f} s: none of {crowd.slow_open}")
    print(f"  new clients, idle only: {describe(after_ok, after_failed)}; idle closed by the proxy"
          f" during the run: {idle_closed}")
    print(f"  after close and {a.settle:.0f} s: {mb(r_end):.1f} MB ({100 * (r_end - base) / base:+.0f}% vs baseline)")
    p = lambda ok, q: ok[min(len(ok) - 1, int(len(ok) * q))] if ok else float("nan")
    print("result", " ".join(f"{k}={v}" for k, v in dict(
        name=a.name, base=f"{mb(base):.1f}", idle_kb=f"{(r_idle - base) / max(a.idle, 1):.1f}",
        slow_kb=f"{(r_slow - r_idle) / max(a.slow, 1):.1f}", peak=f"{mb(peak[0]):.1f}",
        p50=f"{statistics.median(crowd_ok) if crowd_ok else float('nan'):.2f}", p99=f"{p(crowd_ok, 0.99):.2f}",
        max=f"{crowd_ok[-1] if crowd_ok else float('nan'):.2f}", failed=crowd_failed,
        slow_closed=f"{len(closed)}/{crowd.slow_open}",
        slow_closed_s=f"{statistics.median(closed):.1f}" if closed else "-",
        idle_closed=idle_closed, end=f"{mb(r_end):.1f}",
        vs_base=f"{100 * (r_end - base) / base:+.0f}%").items()))


asyncio.run(main())
