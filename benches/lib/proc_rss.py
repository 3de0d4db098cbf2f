"""RSS of a server from /proc, for the HTTP benchmarks (benches/conn_memory.sh, edge_flood.py).

RSS is what the kernel has mapped, so it includes what the allocator keeps after a free.
"""
import time


def rss_kb(pid):
    """VmRSS of pid and its children (nginx's workers), in KB."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def settled_rss(pid):
    """RSS once it stops growing (the server has taken every connection), at most 10 s."""
    last, deadline = rss_kb(pid), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_kb(pid)
        if now <= last:
            return now
        last = now
    return last
