"""The binding on every backend: placement, read/write split, transactions,
scatter, typed round trips, errors with their classes and locations, streams,
tokens across processes, threads."""

import decimal
import os
import subprocess
import sys
import threading
import time

import pytest

import shardroute

TABLE = "py_items"


def fresh_table(s, ddl_tail="(k BIGINT PRIMARY KEY, v TEXT)"):
    s.execute_all(f"DROP TABLE IF EXISTS {TABLE}", intent="write")
    s.execute_all(f"CREATE TABLE {TABLE} {ddl_tail}", intent="write")


def test_rows_land_on_the_shard_the_router_names(backend):
    with backend.router() as r, r.session() as s:
        fresh_table(s)
        for k in range(1, 21):
            res = s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (k, f"v{k}"), key=k,
                            intent="write")
            assert res.rowcount == 1
        seen = {}
        for i, db in enumerate(("shard0", "shard1")):
            for (k,) in backend.direct(db, f"SELECT k FROM {TABLE}"):
                seen[int(k)] = i
        assert seen == {k: r.shard_for(k) for k in range(1, 21)}
        assert set(seen.values()) == {0, 1}  # both shards hold rows
        # Read back through the router, and all at once.
        assert s.execute(f"SELECT v FROM {TABLE} WHERE k = ?", (7,), key=7).fetchone() == ("v7",)
        assert s.execute_all(f"SELECT count(*) FROM {TABLE}").fetchone() == (20,)


def test_reads_go_to_replicas_and_writes_to_the_primary(backend):
    if not backend.has_replica:
        pytest.skip("no replicas")
    with backend.router() as r, r.session() as s:
        s.consistency = "any"
        assert s.consistency == "any"
        assert s.execute(backend.role_sql, key=1, intent="read").fetchone() == ("replica",)
        assert s.execute(backend.role_sql, key=1, intent="write").fetchone() == ("primary",)
        with s.transaction(1):
            assert s.execute(backend.role_sql, key=1, intent="read").fetchone() == ("primary",)
        roles = sorted(n.role for n in r.nodes(0))
        assert roles == ["primary", "replica"]


def test_transactions_commit_or_roll_back(backend):
    with backend.router() as r, r.session() as s:
        fresh_table(s)
        with s.transaction(5):
            s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (5, "kept"), key=5)
            assert s.in_transaction
        assert not s.in_transaction
        with pytest.raises(RuntimeError):
            with s.transaction(6):
                s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (6, "gone"), key=6)
                raise RuntimeError("abort")
        assert not s.in_transaction
        rows = s.execute_all(f"SELECT k, v FROM {TABLE} ORDER BY k", intent="write").fetchall()
        assert rows == [(5, "kept")]
        # A statement for another shard inside a transaction: ProgrammingError (SR_ETXN).
        other = next(k for k in range(100) if r.shard_for(k) != r.shard_for(5))
        with s.transaction(5):
            with pytest.raises(shardroute.ProgrammingError) as e:
                s.execute(f"SELECT 1 FROM {TABLE}", key=other)
            assert e.value.status_name == "SR_ETXN"


def test_scatter_merges_and_explains(backend):
    with backend.router() as r, r.session() as s:
        fresh_table(s, "(k BIGINT PRIMARY KEY, v TEXT, n INTEGER)")
        for k in range(1, 31):
            s.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?)", (k, f"v{k:02d}", k % 3), key=k)
        res = s.execute_all(f"SELECT k FROM {TABLE} ORDER BY k DESC LIMIT 5", intent="write")
        assert [row[0] for row in res] == [30, 29, 28, 27, 26]
        assert [c.name for c in res.description] == ["k"]
        assert res.description[0].type_code == "INT"
        assert tuple(res.description[0]) == ("k", "INT", None, None, None, None, None)
        res = s.execute_all(f"SELECT n, count(*), sum(k), avg(k) FROM {TABLE} GROUP BY n "
                            "ORDER BY n", intent="write")
        rows = res.fetchall()
        assert [(n, c, int(sm)) for n, c, sm, _ in rows] == [
            (0, 10, sum(k for k in range(1, 31) if k % 3 == 0)),
            (1, 10, sum(k for k in range(1, 31) if k % 3 == 1)),
            (2, 10, sum(k for k in range(1, 31) if k % 3 == 2))]
        assert float(rows[0][3]) == pytest.approx(sum(k for k in range(1, 31) if k % 3 == 0) / 10)
        plan = s.explain_all(f"SELECT k FROM {TABLE} ORDER BY k LIMIT 3 OFFSET 2")
        assert "shard0" in plan and "shard1" in plan and "LIMIT" in plan
        with pytest.raises(shardroute.ProgrammingError) as e:
            s.execute_all(f"SELECT count(DISTINCT n) FROM {TABLE}")
        assert e.value.status_name == "SR_EINVAL" and "DISTINCT" in str(e.value)
        # Concatenation: every row, each with the shard it came from.
        res = s.execute_all(f"SELECT k FROM {TABLE}", merge="concat", intent="write")
        assert sorted(v for (v,) in res.rows) == list(range(1, 31))
        assert all(r.shard_for(k) == sh for (k,), sh in zip(res.rows, res.shards))


def test_typed_values_round_trip(backend):
    bytes_type = {"postgres": "BYTEA", "mysql": "LONGBLOB", "sqlite": "BLOB"}[backend.name]
    num_type = "NUMERIC(20,4)" if backend.name != "mysql" else "DECIMAL(20,4)"
    float_type = "DOUBLE PRECISION" if backend.name == "postgres" else "DOUBLE"
    with backend.router() as r, r.session() as s:
        # MariaDB's test databases default to latin1: the text column is asked for utf8mb4.
        charset = " CHARACTER SET utf8mb4" if backend.name == "mysql" else ""
        fresh_table(s, f"(k BIGINT PRIMARY KEY, i BIGINT, f {float_type}, b {bytes_type}, "
                       f"t TEXT{charset}, n {num_type})")
        rows = [
            (1, 2**63 - 1, 1.5, b"a\0b\0\xff", "h\u00e9llo \u2603", decimal.Decimal("12.5")),
            (2, -2**63, -0.25, b"", "", decimal.Decimal("-3")),
            (3, None, None, None, None, None),
        ]
        for row in rows:
            s.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?)", row, key=row[0])
        for row in rows:
            got = s.execute(f"SELECT k, i, f, b, t, n FROM {TABLE} WHERE k = ?", (row[0],),
                            key=row[0], intent="write").fetchone()
            assert got[:5] == row[:5]
            assert type(got[3]) is (bytes if row[3] is not None else type(None))
            if row[5] is None:
                assert got[5] is None
            elif backend.name == "sqlite":
                assert float(got[5]) == float(row[5])  # SQLite keeps 12.5 as a REAL
            else:
                assert got[5] == row[5] and isinstance(got[5], decimal.Decimal)
        # All-int and str parameters (the text path on servers) find the extremes too.
        for k, i in ((1, 2**63 - 1), (2, -2**63)):
            assert s.execute(f"SELECT k, t FROM {TABLE} WHERE i = ? AND k = ?", (i, k), key=k,
                             intent="write").fetchone() == (k, rows[k - 1][4])
        # Bytes with NUL bytes as a scatter parameter.
        assert s.execute_all(f"SELECT count(*) FROM {TABLE} WHERE b = ?", (b"a\0b\0\xff",),
                             intent="write").fetchone() == (1,)
        # Booleans come back as the backend's truth (bool where it has the type).
        got = s.execute("SELECT ?", (True,), key=1).fetchone()[0]
        assert got in (True, 1)


def test_errors_have_their_classes_and_locations(backend):
    with backend.router(**{"pool.max_size": 1}) as r, r.session() as s:
        fresh_table(s)
        s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (9, "x"), key=9)
        with pytest.raises(shardroute.IntegrityError) as e:
            s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (9, "y"), key=9)
        err = e.value
        assert err.status == -7 and err.status_name == "SR_EQUERY"
        assert err.sqlstate.startswith("23")
        assert err.shard == r.shard_for(9) and err.shard_name == r.shard_name(err.shard)
        assert err.node is not None and err.node_uri == r.nodes(err.shard)[err.node].uri
        assert isinstance(err, shardroute.DatabaseError) and isinstance(err, shardroute.Error)
        cls = shardroute.DatabaseError if backend.name == "sqlite" else \
            shardroute.ProgrammingError
        with pytest.raises(cls) as e:
            s.execute("SELEC 1", key=9)
        if backend.name != "sqlite":
            assert e.value.sqlstate.startswith("42")
        # The session goes on.
        assert s.execute("SELECT 1", key=9).fetchone() == (1,)
        with pytest.raises(shardroute.ProgrammingError) as e:
            s.execute(f"SELECT * FROM {TABLE} WHERE k = ?", (1, 2), key=9)
        if backend.name != "sqlite":
            with pytest.raises(shardroute.OperationalError) as e:
                bad_uri = backend.uri(backend.primary.rsplit(":", 1)[0] + ":1", "shard0")
                with shardroute.Router.from_dict(
                        {"shards": {"s": {"primary": bad_uri}},
                         "options": {"connect_timeout_ms": 300}}) as bad, bad.session() as bs:
                    bs.execute("SELECT 1", key=1)
            assert e.value.status_name in ("SR_ECONNECT", "SR_EUNAVAILABLE")


def test_streams_deliver_rows_and_close_early(backend):
    many = {
        "postgres": "SELECT x FROM generate_series(1, 20000) AS x",
        "mysql": "SELECT seq AS x FROM seq_1_to_20000",
        "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                  "WHERE x < 20000) SELECT x FROM c",
    }[backend.name]
    with backend.router(**{"pool.max_size": 1}) as r, r.session() as s:
        with s.stream(many, key=1, intent="write") as st:
            assert [x for (x,) in st] == list(range(1, 20001))
            assert st.description[0].name == "x"
        for _ in range(3):
            st = s.stream(many, key=1, intent="write")
            assert st.fetchone() == (1,)
            st.close()
            with pytest.raises(shardroute.InterfaceError):
                st.fetchone()
            assert s.execute("SELECT 'after'", key=1, intent="write").fetchone() == ("after",)
        fresh_table(s)
        for k in range(1, 41):
            s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (k, "v"), key=k)
        with s.stream_all(f"SELECT k FROM {TABLE} ORDER BY k", intent="write") as st:
            assert [k for (k,) in st] == list(range(1, 41))


CHILD = r"""
import os, sys, shardroute
sys.path.insert(0, os.environ["SR_PY_TESTS"])
import conftest
b = {"postgres": conftest.Postgres, "mysql": conftest.MariaDB}[sys.argv[1]]()
with b.router() as r, r.session() as s:
    s.token = sys.argv[2]
    print(s.execute("SELECT v FROM py_items WHERE k = ?", (77,), key=77, intent="read").fetchone()[0])
"""


def test_tokens_carry_a_write_to_another_process(backend):
    if not backend.has_replica:
        pytest.skip("no replicas: every read is consistent")
    with backend.router() as r, r.session() as s:
        fresh_table(s)
        assert s.token == "" or isinstance(s.token, str)
        s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (77, "from-parent"), key=77)
        token = s.token
        assert token
        env = dict(os.environ, SR_PY_TESTS=os.path.dirname(__file__))
        out = subprocess.run([sys.executable, "-c", CHILD, backend.name, token], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "from-parent"
        with pytest.raises(shardroute.InterfaceError):
            s.token = "not a token"


def test_eight_threads_share_one_router(backend):
    with backend.router() as r:
        with r.session() as s:
            fresh_table(s)
        errors = []

        def work(t):
            try:
                with r.session() as s:
                    for j in range(25):
                        k = t * 1000 + j
                        s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (k, f"t{t}"), key=k)
                        assert s.execute(f"SELECT v FROM {TABLE} WHERE k = ?", (k,),
                                         key=k).fetchone() == (f"t{t}",)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        with r.session() as s:
            assert s.execute_all(f"SELECT count(*) FROM {TABLE}",
                                 intent="write").fetchone() == (200,)


def test_blocking_calls_release_the_gil(backend):
    """Two threads sleeping 0.4 s each on the server finish together, not one after the other."""
    sleep_sql = {"postgres": "SELECT pg_sleep(0.4)", "mysql": "SELECT SLEEP(0.4)"}.get(backend.name)
    if not sleep_sql:
        pytest.skip("no server-side sleep")
    with backend.router() as r:
        def work():
            with r.session() as s:
                s.execute(sleep_sql, key=1, intent="write")

        work()  # connections made
        t0 = time.monotonic()
        ts = [threading.Thread(target=work) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        took = time.monotonic() - t0
        assert took < 0.75, f"two 0.4 s statements on two threads took {took:.2f} s"


def test_a_value_the_database_refuses_is_a_data_error(backend):
    if backend.name == "sqlite":
        pytest.skip("SQLite gives no SQLSTATE")
    with backend.router() as r, r.session() as s:
        if backend.name == "postgres":
            with pytest.raises(shardroute.DataError) as e:
                s.execute("SELECT 1 / 0", key=1)
            assert e.value.sqlstate == "22012"
        else:
            # MariaDB's default sql_mode (STRICT_TRANS_TABLES) refuses an out-of-range value.
            s.execute_all("DROP TABLE IF EXISTS py_small", intent="write")
            s.execute_all("CREATE TABLE py_small (v TINYINT) ENGINE=InnoDB", intent="write")
            with pytest.raises(shardroute.DataError) as e:
                s.execute("INSERT INTO py_small VALUES (?)", (1000,), key=1)
            assert e.value.sqlstate == "22003"


def test_metrics_pass_promtool_and_events_name_the_replica(backend):
    """The metrics of a router that ran statements on the real servers: valid for
    `promtool check metrics` (Debian's prometheus package), no password in them."""
    import shutil

    events = []
    r = backend.router()
    r.close()
    with shardroute.Router.from_dict(
            {"options": {"balance.policy": "round_robin", "consistency.mode": "any"},
             "shards": {"shard0": {"primary": backend.uri(backend.primary, "shard0"),
                                   "replicas": [backend.uri(getattr(backend, "replica",
                                                                    backend.primary), "shard0")]}}},
            on_event=events.append) as r, r.session() as s:
        fresh_table(s)
        s.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", (1, "a"), key=1, intent="write")
        # Under `any` the replica may not have replayed the CREATE TABLE yet: wait for it,
        # bounded (the read that counts is the last, successful one).
        deadline = time.monotonic() + 10
        while True:
            try:
                s.execute(f"SELECT v FROM {TABLE} WHERE k = ?", (1,), key=1).fetchall()
                break
            except shardroute.ProgrammingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        text = r.metrics()
    read = [e for e in events if e.kind == "statement" and e.intent == "read"][-1]
    assert read.role == "replica" and read.reason == "replica" and read.status == 0
    assert "shardroute_statements_total{shard=\"shard0\"" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/deps.sh test installs prometheus)")
    out = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OWN_QUERY = {
    "postgres": "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    "mysql": "SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
}


def test_the_server_shows_the_trace_context(backend):
    if backend.name not in OWN_QUERY:
        pytest.skip("SQLite shows no statement text (test_api covers it)")
    sql = OWN_QUERY[backend.name]
    comment = f"\n/*route='%2Fusers%2F%7Bid%7D',traceparent='{TRACEPARENT}'*/"
    with backend.router() as r, r.session() as s:
        assert s.execute(sql, key=1).fetchone() == (sql,)
        s.set_trace(TRACEPARENT, {"route": "/users/{id}"})
        assert s.execute(sql, key=1).fetchone() == (sql + comment,)
        assert s.execute(sql + " -- the end", key=1, intent="write").fetchone() == \
            (sql + " -- the end" + comment,)
        assert s.execute_all(sql).fetchall() == [(sql + comment,)] * 2
        with s.stream(sql, key=1) as st:
            assert list(st) == [(sql + comment,)]
        with pytest.raises(shardroute.InterfaceError, match="tag 1"):
            s.set_trace(TRACEPARENT, {"bad key": "v"})
        assert s.execute(sql, key=1).fetchone() == (sql + comment,)  # kept
        s.set_trace(None)
        assert s.execute(sql, key=1).fetchone() == (sql,)
