#!/usr/bin/env python3
"""Capture real client traffic into the Postgres fuzz seeds (issue 15: seeds from live
clients, beside the ones fuzz/make_seeds.py writes from the protocol).

Starts a throwaway PostgreSQL (initdb in a temporary directory, as the `postgres` user when
run as root, SCRAM logins, loopback only), puts a recording TCP relay in front of it, and
runs real clients through the relay: psql (simple queries, a read-only transaction, a
`\\d`), pgbench `-M simple`, `-M extended` and `-M prepared` (a few transactions of the
TPC-B-like script each), tokio-postgres (examples/tokio_postgres_client.rs, built here with
cargo: named statements, a transaction with a savepoint, an error, pipelined queries, COPY
both ways), and asyncpg when ASYNCPG_PYTHON names a Python that has it.
Each connection's two byte streams become seeds:
  pg_startup/live_<client>   the client's first packet (the startup message)
  pg_frontend/live_<client>  mode 1 (authentication limits) with the client's SCRAM
                             messages, and mode 0 (logged-in limits) with the rest
  pg_backend/live_<client>   everything the server sent
Run from the repository root:  [ASYNCPG_PYTHON=venv/bin/python] python3 fuzz/capture_seeds.py
Needs the PostgreSQL server binaries and pgbench (scripts/install-deps.sh installs them).
"""
import glob
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
PG = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
PASSWORD = "capture-pw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """Accepts on a loopback port, connects each client to the server, and keeps both
    directions' bytes per connection."""

    def __init__(self, server_port):
        self.server_port = server_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", self.server_port))
            rec = {"client": bytearray(), "server": bytearray()}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.pump, args=(c, s, rec["client"]), daemon=True).start()
            threading.Thread(target=self.pump, args=(s, c, rec["server"]), daemon=True).start()

    @staticmethod
    def pump(src, dst, into):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                into.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def take(self):
        with self.lock:
            conns, self.conns = self.conns, []
        return conns


ASYNCPG_SCRIPT = """
import asyncio, io, sys
import asyncpg

async def main(port, password):
    c = await asyncpg.connect(host="127.0.0.1", port=int(port), user="postgres",
                              password=password, database="postgres", ssl=False)
    await c.fetch("SELECT aid, abalance FROM pgbench_accounts WHERE aid = $1", 7)
    stmt = await c.prepare("SELECT abalance FROM pgbench_accounts WHERE aid = ANY($1::int[])")
    await stmt.fetch([1, 2, 3])
    async with c.transaction():
        await c.execute("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", 1, 1)
    await c.executemany("SELECT $1::int + $2::int", [(1, 2), (3, 4)])
    await c.copy_from_query("SELECT * FROM pgbench_branches", output=io.BytesIO())
    await c.close()

asyncio.run(main(*sys.argv[1:]))
"""


def split_client(stream):
    """(startup packet, authentication-phase messages, the rest) of a client stream."""
    (n,) = struct.unpack(">i", stream[:4])
    startup, rest = bytes(stream[:n]), bytes(stream[n:])
    auth, i = b"", 0
    while i + 5 <= len(rest) and rest[i : i + 1] == b"p":
        (m,) = struct.unpack(">i", rest[i + 1 : i + 5])
        auth += rest[i : i + 1 + m]
        i += 1 + m
    return startup, auth, rest[i:]


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    tmp = tempfile.mkdtemp(prefix="switchyard-capture-")
    as_pg = []
    if os.getuid() == 0:
        shutil.chown(tmp, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    db = os.path.join(tmp, "db")
    pwfile = os.path.join(tmp, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(pwfile, 0o644)
    run = lambda cmd, **kw: subprocess.run(cmd, check=True, timeout=120, **kw)
    try:
        run(as_pg + [f"{PG}/initdb", "-D", db, "-U", "postgres", "-A", "scram-sha-256",
                     f"--pwfile={pwfile}", "--no-sync", "--no-locale", "-E", "UTF8"],
            stdout=subprocess.DEVNULL)
        run(as_pg + [f"{PG}/pg_ctl", "-D", db, "-l", os.path.join(tmp, "log"), "-w", "-o",
                     f"-c listen_addresses=127.0.0.1 -p {port} -k {tmp} -c fsync=off", "start"],
            stdout=subprocess.DEVNULL)
        env = dict(os.environ, PGPASSWORD=PASSWORD, PGSSLMODE="disable")
        base = ["-h", "127.0.0.1", "-U", "postgres"]
        run([f"{PG}/pgbench", *base, "-p", str(port), "-i", "-s", "1", "-q", "postgres"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        relay = Relay(port)
        clients = {
            "psql": [f"{PG}/psql", *base, "-p", str(relay.port), "-X", "-v", "ON_ERROR_STOP=1",
                     "-c", "SELECT count(*) FROM pgbench_accounts WHERE aid < 10",
                     "-c", "BEGIN READ ONLY; SELECT abalance FROM pgbench_accounts WHERE aid = 1; COMMIT;",
                     "-c", "\\d pgbench_accounts", "postgres"],
        }
        for mode in ("simple", "extended", "prepared"):
            clients[f"pgbench_{mode}"] = [f"{PG}/pgbench", *base, "-p", str(relay.port), "-n",
                                          "-M", mode, "-t", "3", "-c", "1", "postgres"]
        # asyncpg, when a Python with it is given (ASYNCPG_PYTHON, e.g. a venv's python after
        # `pip install asyncpg==0.32.0`): its named statements, a transaction, COPY out.
        asyncpg_python = os.environ.get("ASYNCPG_PYTHON")
        if asyncpg_python:
            clients["asyncpg"] = [asyncpg_python, "-c", ASYNCPG_SCRIPT, str(relay.port), PASSWORD]
        # tokio-postgres, the Rust driver (and the one Switchyard's own monitor uses).
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if shutil.which("cargo"):
            run(["cargo", "build", "-q", "--example", "tokio_postgres_client"], cwd=root)
            clients["tokio_postgres"] = [
                os.path.join(root, "target", "debug", "examples", "tokio_postgres_client"),
                str(relay.port), PASSWORD]
        else:
            print("tokio_postgres: skipped (no cargo)")
        for name, cmd in clients.items():
            run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conns = [c for c in relay.take() if len(c["client"]) >= 8]
            for k, c in enumerate(conns):
                tag = name if k == 0 else f"{name}_{k}"
                startup, auth, rest = split_client(c["client"])
                write("pg_startup", f"live_{tag}", startup)
                if auth:
                    write("pg_frontend", f"live_{tag}_auth", b"\x01\x00" + auth)
                write("pg_frontend", f"live_{tag}", b"\x00\x00" + rest)
                write("pg_backend", f"live_{tag}", bytes(c["server"]))
            print(f"{name}: {len(conns)} connection(s)")
    finally:
        subprocess.run(as_pg + [f"{PG}/pg_ctl", "-D", db, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
