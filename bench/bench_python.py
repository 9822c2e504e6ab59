"""The Python binding's cost (issue 13), printed as ratios measured in the same run.

  1. Routed point reads from Python (Session.execute, a replica read by
     primary key) against psycopg2 reading the same rows from the same
     replica directly: reads per second, medians of interleaved rounds
     (target: routed >= 0.9 x psycopg2).
  2. The binding's own cost per call: Session.execute against the same C
     call (sr_exec_values) made through cffi with arguments prepared once and
     the result only freed, on a SQLite shard (a local file): microseconds added
     per call by converting arguments and results.

  bench_python.py [SECONDS_PER_ROUND [ROUNDS]]

Needs SR_PG_PRIMARY and SR_PG_REPLICA1 (tests/env/pg_cluster.sh:
`scripts/bench.sh python` starts it), SHARDROUTE_LIBRARY and PYTHONPATH
(bindings/python), as meson's benchmark sets them. Nothing is asserted.
"""

import os
import statistics
import sys
import time

import psycopg2

import shardroute
from shardroute._ffi import ffi, lib

ROWS = 10000


def rounds_of(fn, seconds):
    """Calls fn() (one read) for `seconds`; returns reads per second."""
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(200):
            fn(n)
            n += 1
        now = time.perf_counter()
        if now >= end:
            return n / (now - t0)


def setup(primary, replica):
    con = psycopg2.connect(f"{primary}/shard0")
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_py")
        cur.execute("CREATE TABLE bench_py (id bigint PRIMARY KEY, payload text)")
        cur.execute("INSERT INTO bench_py SELECT g, md5(g::text) FROM generate_series(1, %s) g",
                    (ROWS,))
        cur.execute("SELECT pg_current_wal_lsn()")
        lsn = cur.fetchone()[0]
    con.close()
    rep = psycopg2.connect(f"{replica}/shard0")
    rep.autocommit = True
    with rep.cursor() as cur:
        for _ in range(200):
            cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))
            if cur.fetchone()[0]:
                break
            time.sleep(0.05)
    return rep


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    primary, replica = os.environ.get("SR_PG_PRIMARY"), os.environ.get("SR_PG_REPLICA1")
    if not primary or not replica:
        sys.exit("bench_python: SR_PG_PRIMARY / SR_PG_REPLICA1 not set (scripts/bench.sh python)")
    rep = setup(primary, replica)
    sql = "SELECT id, payload FROM bench_py WHERE id = ?"
    router = shardroute.Router.from_dict({
        "options": {"balance.policy": "round_robin"},
        "shards": {"shard0": {"primary": f"{primary}/shard0",
                              "replicas": [f"{replica}/shard0"]}}})
    s = router.session()
    s.consistency = "any"
    cur = rep.cursor()

    def routed(i):
        k = i % ROWS + 1
        row = s.execute(sql, (k,), key=k, intent="read").fetchone()
        assert row[0] == k

    def direct(i):
        k = i % ROWS + 1
        cur.execute("SELECT id, payload FROM bench_py WHERE id = %s", (k,))
        assert cur.fetchone()[0] == k

    routed(0), direct(0)
    r_rates, d_rates, ratios = [], [], []
    for i in range(rounds):
        pair = (routed, direct) if i % 2 == 0 else (direct, routed)
        rates = {f: rounds_of(f, seconds) for f in pair}
        r_rates.append(rates[routed])
        d_rates.append(rates[direct])
        ratios.append(rates[routed] / rates[direct])
    print(f"shardroute {shardroute.version()} Python binding, {rounds} interleaved rounds of "
          f"{seconds:g} s, medians")
    print(f"point reads on a PostgreSQL replica: routed Session.execute "
          f"{statistics.median(r_rates):.0f}/s, psycopg2 direct {statistics.median(d_rates):.0f}/s: "
          f"routed / psycopg2 {statistics.median(ratios):.3f} (target >= 0.9)")
    s.close()
    router.close()
    rep.close()

    # 2. The binding's own cost, on a SQLite shard (no I/O to hide it).
    import tempfile

    tmp = tempfile.mkdtemp()
    lr = shardroute.Router.from_config(f"[shard m]\nprimary = sqlite:{tmp}/bench.db\n")
    ls = lr.session()
    ls.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)", key=1)
    for k in range(1, 101):
        ls.execute("INSERT INTO t VALUES (?, ?)", (k, f"p{k}"), key=k)
    csql = b"SELECT id, payload FROM t WHERE id = ?"
    key = ffi.new("sr_key *")
    key.kind = lib.SR_KEY_INT
    key.i = 7
    val = ffi.new("sr_value[1]")
    val[0].type = lib.SR_TYPE_INT
    val[0].i = 7
    out = ffi.new("sr_result **")
    handle = ls._s

    def c_call(i):
        if lib.sr_exec_values(handle, key[0], lib.SR_READ, ffi.NULL, csql, 1, val, out) != 0:
            raise RuntimeError("sr_exec_values failed")
        lib.sr_result_free(out[0])

    def py_call(i):
        ls.execute("SELECT id, payload FROM t WHERE id = ?", (7,), key=7, intent="read").fetchone()

    c_us, p_us = [], []
    for i in range(rounds):
        pair = (c_call, py_call) if i % 2 == 0 else (py_call, c_call)
        rates = {f: rounds_of(f, seconds / 2) for f in pair}
        c_us.append(1e6 / rates[c_call])
        p_us.append(1e6 / rates[py_call])
    cm, pm = statistics.median(c_us), statistics.median(p_us)
    print(f"per call, SQLite: the C call through cffi {cm:.2f} us, Session.execute "
          f"{pm:.2f} us: the binding adds {pm - cm:.2f} us per call")
    ls.close()
    lr.close()


if __name__ == "__main__":
    main()
