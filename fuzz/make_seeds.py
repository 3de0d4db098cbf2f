#!/usr/bin/env python3
"""Write the seed corpora in fuzz/seeds/<target>/ (small, committed; the grown corpus in
fuzz/corpus/ is not). Messages are the ones real clients send: psql's simple queries,
pgbench -M prepared and tokio-postgres's extended protocol (Parse/Bind/Describe/Execute/
Sync with named statements), libpq's startup and SCRAM exchange, asyncpg's statement names;
configs are the repository's own examples and test configs. Run from the repository root:
    python3 fuzz/make_seeds.py
"""
import glob
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def msg(tag, body):
    return tag + struct.pack(">i", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# === client messages (pg_frontend: mode byte, chunking byte, stream) ===
Q = lambda sql: msg(b"Q", cstr(sql))
parse = lambda name, sql, oids=(): msg(
    b"P", cstr(name) + cstr(sql) + struct.pack(">h", len(oids)) + b"".join(struct.pack(">i", o) for o in oids)
)


def bind(portal, stmt, params=()):
    b = cstr(portal) + cstr(stmt) + struct.pack(">h", 0) + struct.pack(">h", len(params))
    for p in params:
        b += struct.pack(">i", -1) if p is None else struct.pack(">i", len(p)) + p
    return msg(b"B", b + struct.pack(">h", 0))


describe = lambda kind, name: msg(b"D", kind + cstr(name))
close = lambda kind, name: msg(b"C", kind + cstr(name))
execute = lambda portal, rows=0: msg(b"E", cstr(portal) + struct.pack(">i", rows))
SYNC, FLUSH, TERM = msg(b"S", b""), msg(b"H", b""), msg(b"X", b"")

psql = Q("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') ORDER BY 1,2;") + Q("BEGIN READ ONLY; SELECT 1; COMMIT;") + TERM
pgbench = b"".join(
    [
        parse("P0_1", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;"),
        bind("", "P0_1", [b"-4321", b"88"]),
        describe(b"P", ""),
        execute(""),
        SYNC,
        parse("P0_2", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"),
        bind("", "P0_2", [b"88"]),
        execute(""),
        SYNC,
    ]
)
tokio_pg = b"".join(
    [
        parse("s0", "SELECT $1::TEXT", [25]),
        describe(b"S", "s0"),
        SYNC,
        bind("", "s0", [b"hello", None]),
        execute(""),
        close(b"S", "s0"),
        SYNC,
        FLUSH,
    ]
)
asyncpg = b"".join(
    [
        parse("__asyncpg_stmt_1__", "SELECT * FROM t WHERE id = $1 FOR UPDATE", [23]),
        describe(b"S", "__asyncpg_stmt_1__"),
        FLUSH,
        bind("", "__asyncpg_stmt_1__", [b"\x00\x00\x00\x07"]),
        execute("", 50),
        SYNC,
        msg(b"d", b"1\tone\n"),
        msg(b"c", b""),
        msg(b"f", cstr("client gave up")),
    ]
)
sasl_initial = msg(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", 32) + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO%hvYD")
sasl_final = msg(b"p", b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
for i, (name, stream) in enumerate(
    [("psql", psql), ("pgbench", pgbench), ("tokio_postgres", tokio_pg), ("asyncpg", asyncpg)]
):
    write("pg_frontend", name, b"\x00" + bytes([0x5A + i]) + stream)
write("pg_frontend", "scram_login", b"\x01\x33" + sasl_initial + sasl_final)
write("pg_frontend", "password", b"\x01\x00" + msg(b"p", cstr("md5a3556571e93b0d20722ba62be61e8c2d")) + TERM)
write("pg_frontend", "bad_header", b"\x00\x01" + Q("SELECT 1") + b"Z\x00\x00\x00\x02")

# === server messages (pg_backend) ===
R = lambda code, rest=b"": msg(b"R", struct.pack(">i", code) + rest)
ps = lambda k, v: msg(b"S", cstr(k) + cstr(v))
ready = lambda s: msg(b"Z", s)


def row(*cols):
    b = struct.pack(">h", len(cols))
    for c in cols:
        b += struct.pack(">i", -1) if c is None else struct.pack(">i", len(c)) + c
    return msg(b"D", b)


def err(sev, code, text):
    return msg(b"E", b"S" + cstr(sev) + b"V" + cstr(sev) + b"C" + cstr(code) + b"M" + cstr(text) + b"\0")


welcome = R(0) + ps("server_version", "15.8") + ps("client_encoding", "UTF8") + msg(b"K", struct.pack(">II", 4242, 0xFEED)) + ready(b"I")
write("pg_backend", "login", R(10, cstr("SCRAM-SHA-256") + b"\0") + R(11, b"r=abc,s=c2FsdA==,i=4096") + R(12, b"v=xyz") + welcome)
write("pg_backend", "md5_login", R(5, b"\x01\x02\x03\x04") + welcome)
write("pg_backend", "query", msg(b"T", struct.pack(">h", 1) + cstr("pg_is_in_recovery") + struct.pack(">ihihih", 0, 0, 16, 1, -1, 0)) + row(b"f") + msg(b"C", cstr("SELECT 1")) + ready(b"T"))
write("pg_backend", "lsn", row(b"0/3000148", None, b"t") + ready(b"I"))
write("pg_backend", "error", err("FATAL", "57P01", "terminating connection due to administrator command") + msg(b"N", b"SNOTICE\0Mhi\0\0") + ready(b"E"))
write("pg_backend", "negotiate", msg(b"v", struct.pack(">ii", 0, 1) + cstr("_pq_.x")) + welcome)

# === startup packets (pg_startup) ===
def startup(params, version=196608):
    body = struct.pack(">I", version) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack(">i", len(body) + 4) + body


write("pg_startup", "psql", startup([("user", "postgres"), ("database", "app"), ("application_name", "psql"), ("client_encoding", "UTF8")]))
write("pg_startup", "pgbench", startup([("user", "bench"), ("database", "bench")]))
write("pg_startup", "asyncpg", startup([("user", "app"), ("database", "app"), ("client_encoding", "utf-8")]))
write("pg_startup", "replication", startup([("user", "rep"), ("replication", "database"), ("_pq_.compression", "on")], 196610))
write("pg_startup", "ssl", struct.pack(">ii", 8, 80877103))
write("pg_startup", "gssenc", struct.pack(">ii", 8, 80877104))
write("pg_startup", "cancel", struct.pack(">iiII", 16, 80877102, 4242, 0xFEED))
write("pg_startup", "protocol2", startup([("user", "old")], 131072))

# === SCRAM (scram: mode byte; 0 server messages, 1 real client, 2 client side) ===
write("scram", "server", b"\x00n,,n=,r=rOprNGfwEbeRWgbNEkqO\xffc=biws,r=rOprNGfwEbeRWgbNEkqOSERVERNONCE,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
write("scram", "server_binding", b"\x00y,,n=user,r=abc\xffc=eSws,r=abcSERVERNONCE,p=AAAA")
write("scram", "real_client", b"\x31pencil\xffpenc1l")
write("scram", "real_client_unicode", b"\x41I\xc2\xadX\xffIX")
write("scram", "client_side", b"\x02" + R(10, cstr("SCRAM-SHA-256") + b"\0") + R(11, b"r=abc,s=c2FsdA==,i=16") + R(12, b"v=xyz") + welcome)
write("scram", "client_md5", b"\x0a" + R(5, b"\x01\x02\x03\x04") + welcome)
write("scram", "client_cleartext", b"\x0a" + R(3) + welcome)

# === SQL (classify) ===
sqls = {
    "select": "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "update": "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    "begin_ro": "BEGIN READ ONLY; SELECT 1; COMMIT",
    "begin_ser": "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
    "cte_write": "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "for_update": "SELECT * FROM t WHERE id = 1 FOR UPDATE",
    "nextval": "SELECT CASE WHEN $1 THEN nextval('s') ELSE 0 END",
    "override": "/* switchyard: replica */ SELECT price_of(1)",
    "copy": "COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)",
    "explain": "EXPLAIN ANALYZE SELECT count(*) FROM t",
    "set_tx": "SET TRANSACTION READ ONLY",
    "show": "SHOW search_path",
    "into": "SELECT * INTO t2 FROM t",
    "psql_describe": "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;",
    "comment_string": "SELECT '/* switchyard: replica */' FROM t; DELETE FROM t",
    "values": "VALUES (1), (2) ORDER BY 1",
    "qualified": "SELECT shop.price_of(3), pg_catalog.now()",
    "advisory": "SELECT pg_advisory_lock(1)",
}
for name, sql in sqls.items():
    write("classify", name, sql.encode())

# === configs (config) ===
here = os.path.dirname(ROOT)
repo = os.path.dirname(here)
n = 0
for path in sorted(glob.glob(os.path.join(repo, "config/examples/*.toml")) + glob.glob(os.path.join(repo, "examples/**/*.toml"), recursive=True)):
    with open(path, "rb") as f:
        write("config", os.path.basename(path), f.read())
    n += 1
write("config", "empty.toml", b"")
write("config", "errors.toml", b'[control]\nreload_debounce = "soon"\n[http.upstreams.api.pools.blue\n')

# === conninfo ===
write("conninfo", "basebackup", b"user=postgres passfile='/var/lib/postgresql/.pgpass' channel_binding=prefer host=127.0.0.1 port=5433 sslmode=prefer sslcompression=0 sslcertmode=allow krbsrvname=postgres gssdelegation=0 target_session_attrs=any load_balance_hosts=disable")
write("conninfo", "patroni", b"dbname=postgres user=replicator password='sec\\'ret' host=10.0.0.1 hostaddr=10.0.0.1 port=5432 application_name=pg2\x01new.host")
write("conninfo", "quoted", b"password='a\\\\b c' application_name='it''s'")

# === HTTP heads (http_framing) ===
heads = {
    "get": b"GET /api/v1/items?id=1 HTTP/1.1\r\nHost: api.test\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    "post_cl": b"POST /api HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    "chunked": b"POST /api HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "cl_te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
    "two_cl": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
    "te_gzip": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
}
for name, h in heads.items():
    write("http_framing", name, h)
print("seeds written under", ROOT)
