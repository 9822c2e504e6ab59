"""The binding against the C header, and its behaviour on bad input (SQLite only)."""

import gc
import os
import re
import threading

import pytest

import shardroute
import importlib

_ffi = importlib.import_module("shardroute._ffi")  # the module (the package binds the name to its FFI)

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "include", "shardroute.h")


def _decls(text):
    """name -> normalised declaration, for every function prototype in C text."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"#[^\n]*", " ", text)
    text = text.replace("SR_API", " ")
    out = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?\b(sr_\w+)\s*\(([^;{}()]*)\))\s*;", text):
        name = m.group(2)
        out[name] = re.sub(r"\s+", " ", m.group(1)).replace("* ", "*").replace(" *", "*").strip()
    return out


def test_every_declared_function_matches_the_header():
    with open(HEADER) as f:
        header = _decls(f.read())
    ours = _decls(_ffi.CDEF)
    assert len(ours) > 50
    for name, decl in ours.items():
        assert name in header, f"{name} is not in include/shardroute.h"
        assert decl == header[name], f"{name}: binding {decl!r} != header {header[name]!r}"


def test_struct_layouts_match_the_header():
    """The version constants and the struct fields the binding declares."""
    with open(HEADER) as f:
        text = f.read()
    for const, value in (("SR_NODE_INFO_VERSION", _ffi.NODE_INFO_VERSION),
                         ("SR_READ_OPTS_VERSION", _ffi.READ_OPTS_VERSION),
                         ("SR_MERGE_SPEC_VERSION", _ffi.MERGE_SPEC_VERSION),
                         ("SR_SCATTER_OPTS_VERSION", _ffi.SCATTER_OPTS_VERSION),
                         ("SR_EVENT_VERSION", _ffi.EVENT_VERSION)):
        assert re.search(rf"#define {const} {value}\b", text), const
    for struct in ("sr_key", "sr_value", "sr_read_opts", "sr_scatter_opts", "sr_merge_spec",
                   "sr_node_info", "sr_order_key", "sr_event"):
        m = re.search(rf"typedef struct {struct} \{{(.*?)\}} {struct};", text, re.S)
        assert m, struct
        fields = re.findall(r"(\w+)\s*;", re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S))
        assert [f for f, _ in _ffi.ffi.typeof(struct).fields] == fields, struct


def test_module_attributes():
    assert shardroute.apilevel == "2.0"
    assert shardroute.paramstyle == "qmark"
    assert shardroute.threadsafety == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+", shardroute.version())
    assert issubclass(shardroute.IntegrityError, shardroute.DatabaseError)
    assert issubclass(shardroute.InterfaceError, shardroute.Error)
    assert "Router" in shardroute.__doc__ and shardroute.Session.execute.__doc__


def test_routers_from_text_dict_and_file(tmp_path):
    text = f"[shard a]\nprimary = sqlite:{tmp_path}/a.db\n[shard b]\nprimary = sqlite:{tmp_path}/b.db\n"
    conf = tmp_path / "sr.conf"
    conf.write_text(text)
    d = {"options": {"pool.max_size": 2}, "shards": {
        "a": {"primary": f"sqlite:{tmp_path}/a.db"}, "b": {"primary": f"sqlite:{tmp_path}/b.db"}}}
    for r in (shardroute.Router.from_config(text), shardroute.Router.from_file(conf),
              shardroute.Router.from_dict(d)):
        with r:
            assert r.nshards == 2 and [r.shard_name(i) for i in range(2)] == ["a", "b"]
            assert r.shard_for(42) in (0, 1) and r.shard_for("acme") == r.shard_for(b"acme")
            assert [n.role for n in r.nodes()] == ["primary", "primary"]


def test_bad_configuration_says_why(tmp_path):
    with pytest.raises(shardroute.InterfaceError, match="no.such"):
        shardroute.Router.from_dict({"options": {"no.such": 1}, "shards": {}})
    with pytest.raises(shardroute.InterfaceError, match="line 1"):
        shardroute.Router.from_config("this is not = [config")
    with pytest.raises(shardroute.InterfaceError):
        shardroute.Router.from_file(tmp_path / "missing.conf")
    with pytest.raises(shardroute.InterfaceError, match="unknown configuration keys"):
        shardroute.Router.from_dict({"shard": {}})
    with pytest.raises(shardroute.InterfaceError):
        shardroute.Router.from_config(b"[shard a]")
    with pytest.raises(shardroute.NotSupportedError):
        shardroute.Router.from_dict({"shards": {"a": {"primary": "nosuchdb://x/y"}}})
    with pytest.raises(shardroute.InterfaceError):
        shardroute.Router()


def test_password_never_in_a_message():
    d = {"shards": {"a": {"primary": "postgresql://u:s3cret-pw@127.0.0.1:1/db"}},
         "options": {"connect_timeout_ms": 200}}
    try:
        r = shardroute.Router.from_dict(d)
    except shardroute.NotSupportedError:
        pytest.skip("no PostgreSQL driver in this build")
    with r, r.session() as s:
        with pytest.raises(shardroute.OperationalError) as e:
            s.execute("SELECT 1", key=1)
        assert "s3cret-pw" not in str(e.value) and "***" in str(e.value)
        assert "s3cret-pw" not in e.value.node_uri
        assert all("s3cret-pw" not in n.uri for n in r.nodes())


def test_bad_arguments_raise_and_leave_the_session_usable(sqlite_router):
    r = sqlite_router
    with r.session() as s:
        s.execute_all("CREATE TABLE t (k INTEGER PRIMARY KEY, v)", intent="write")
        bad = [
            (lambda: s.execute("SELECT ?", (object(),), key=1), "cannot send"),
            (lambda: s.execute("SELECT ?", "x", key=1), "sequence"),
            (lambda: s.execute("SELECT ?", (2**64,), key=1), "64-bit"),
            (lambda: s.execute("SELECT 1", key=None), "exactly one"),
            (lambda: s.execute("SELECT 1", key=1.5), "shard key"),
            (lambda: s.execute("SELECT 1", key=2**70), "64-bit"),
            (lambda: s.execute("SELECT 1", key=1, intent="sideways"), "intent"),
            (lambda: s.execute(b"SELECT 1", key=1), "SQL is a str"),
            (lambda: s.execute("SELECT '\udcff'", key=1), "Unicode"),
            (lambda: s.execute("SELECT 1\0", key=1), "NUL"),
            (lambda: s.execute("SELECT ?", ("a\0b",), key=1), "NUL"),
            (lambda: s.execute("SELECT 1", key=1, consistency="eventual"), "consistency"),
            (lambda: s.execute_all("SELECT 1", merge="zip"), "merge"),
            (lambda: setattr(s, "consistency", "eventual"), "consistency"),
            (lambda: setattr(s, "max_lag_ms", "x"), "max_lag_ms"),
            (lambda: s.begin(), "exactly one"),
        ]
        for call, text in bad:
            with pytest.raises(shardroute.Error, match=text):
                call()
        with pytest.raises(shardroute.ProgrammingError):
            s.execute("SELECT 1", shard=7)
        with pytest.raises(shardroute.ProgrammingError):
            s.execute("   ", key=1)
        assert s.execute("SELECT 1 + 1", key=1).fetchone() == (2,)
        assert s.execute("SELECT ?", ("x",), shard=0).fetchone() == ("x",)


def test_closed_objects_raise_and_results_outlive_them(sqlite_router, tmp_path):
    r = shardroute.Router.from_config(f"[shard a]\nprimary = sqlite:{tmp_path}/c.db\n")
    s = r.session()
    res = s.execute("SELECT 'kept', x'00ff'", key=1)
    st = s.stream("SELECT 1", key=1)
    r.close()  # closes the session and the stream too
    r.close()
    assert r.closed and s.closed
    assert res.fetchall() == [("kept", b"\x00\xff")]
    for call in (lambda: s.execute("SELECT 1", key=1), lambda: r.session(),
                 lambda: r.shard_for(1), lambda: st.fetchone(), lambda: s.token):
        with pytest.raises(shardroute.InterfaceError, match="closed"):
            call()
    del s, st, r
    gc.collect()


def test_a_session_used_by_two_threads_is_serialised(sqlite_router):
    with sqlite_router.session() as s:
        errors = []

        def work():
            try:
                for _ in range(200):
                    assert s.execute("SELECT 1", key=1).fetchone() == (1,)
            except Exception as e:
                errors.append(e)

        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors


def test_closing_a_router_while_other_threads_use_it(tmp_path):
    """Calls in progress finish first; later ones raise InterfaceError; nothing crashes."""
    for _ in range(5):
        r = shardroute.Router.from_config(f"[shard a]\nprimary = sqlite:{tmp_path}/z.db\n")
        stop = threading.Event()
        seen = []

        def hammer():
            while not stop.is_set():
                try:
                    r.nodes()
                    r.shard_for(1)
                    with r.session() as s:
                        s.execute("SELECT 1", key=1)
                except shardroute.InterfaceError as e:
                    seen.append(str(e))
                    return

        ts = [threading.Thread(target=hammer) for _ in range(3)]
        for t in ts:
            t.start()
        r.close()
        stop.set()
        for t in ts:
            t.join(10)
        assert all("closed" in m for m in seen)


def test_garbage_collected_in_any_order(tmp_path):
    """A router, a session and an open stream dropped together in a reference cycle (as a
    traceback keeps them): the collector may finalise them in any order; the session is
    freed before the router, the cursor before the session."""
    for _ in range(10):
        r = shardroute.Router.from_config(f"[shard a]\nprimary = sqlite:{tmp_path}/g.db\n")
        s = r.session()
        st = s.stream("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                      "WHERE x < 1000) SELECT x FROM c", key=1)
        assert st.fetchone() == (1,)
        cycle = [r, s, st]
        cycle.append(cycle)
        del r, s, st, cycle
        gc.collect()


def test_explicit_merge_specs_pins_and_affinity(tmp_path):
    d = {"shards": {"a": {"primary": f"sqlite:{tmp_path}/ma.db"},
                    "b": {"primary": f"sqlite:{tmp_path}/mb.db"}},
         "pins": {"vip": "b", 1: "a"}}
    with shardroute.Router.from_dict(d) as r, r.session() as s:
        assert r.shard_for("vip") == 1 and r.shard_for(1) == 0
        s.set_affinity("tenant-9")
        s.execute_all("CREATE TABLE t (k INTEGER PRIMARY KEY, g INTEGER, v INTEGER)",
                      intent="write")
        for k in range(1, 21):
            s.execute("INSERT INTO t VALUES (?, ?, ?)", (k, k % 2, k), key=k)
        # Per-shard partial sums and counts, combined by the spec, ordered by group desc.
        res = s.execute_all("SELECT g, sum(v), count(*) FROM t GROUP BY g",
                            merge={"group": [0], "aggs": ["none", "sum", "count"],
                                   "order": [(0, "desc")]})
        assert res.fetchall() == [(1, 100, 10), (0, 110, 10)]
        res = s.execute_all("SELECT k FROM t ORDER BY k DESC",
                            merge={"order": [(0, "desc")], "limit": 3, "offset": 1})
        assert [k for (k,) in res] == [19, 18, 17]
        for bad in ({"order": [(0, "sideways")]}, {"aggs": ["median"]}, {"limit": -1},
                    {"nope": 1}):
            with pytest.raises(shardroute.InterfaceError):
                s.execute_all("SELECT k FROM t", merge=bad)
        with pytest.raises(shardroute.ProgrammingError):  # the library checks the spec too
            s.execute_all("SELECT k FROM t", merge={"order": [(5, "asc")]})


def test_metrics_and_events(tmp_path):
    events = []
    text = (f"[shard a]\nprimary = sqlite:{tmp_path}/a.db\nreplica = sqlite:{tmp_path}/a.db\n"
            f"[shard b]\nprimary = sqlite:{tmp_path}/b.db\n")
    with shardroute.Router.from_config(text, on_event=events.append) as r, r.session() as s:
        s.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)", shard=0, intent="write")
        s.execute("SELECT count(*) FROM t", shard=0, intent="read")
        with pytest.raises(shardroute.DatabaseError):
            s.execute("SELECT nope FROM t", shard=0, intent="read")
        m = r.metrics()
        assert (f'shardroute_statements_total{{shard="a",node="sqlite:{tmp_path}/a.db",'
                'role="primary",intent="write",outcome="ok"} 1\n') in m
        # The replica names the primary's file: its label tells it apart by its index.
        assert (f'shardroute_statements_total{{shard="a",node="sqlite:{tmp_path}/a.db#1",'
                'role="replica",intent="read",outcome="sql_error"} 1\n') in m
        assert "# TYPE shardroute_statement_duration_seconds histogram" in m
    assert [e.kind for e in events] == ["statement"] * 3
    w, rd, bad = events
    assert (w.intent, w.reason, w.shard_name, w.node, w.role, w.status) == \
        ("write", "write", "a", 0, "primary", 0)
    assert (rd.intent, rd.reason, rd.node, rd.role, rd.sql) == \
        ("read", "replica", 1, "replica", "SELECT count(*) FROM t")
    assert (bad.status_name, bad.node_uri) == ("SR_EQUERY", f"sqlite:{tmp_path}/a.db")
    assert rd.duration_us >= 0 and bad.sqlstate == ""  # SQLite has no SQLSTATE


def test_event_callbacks_that_raise_or_are_not_callable(tmp_path, monkeypatch):
    import sys

    text = f"[shard a]\nprimary = sqlite:{tmp_path}/a.db\n"
    raised = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(u.exc_value))

    def boom(ev):
        raise RuntimeError("from the callback")

    with shardroute.Router.from_config(text, on_event=boom) as r, r.session() as s:
        assert s.execute("SELECT 1", key=1).fetchone() == (1,)  # the statement is unaffected
    assert [str(e) for e in raised] == ["from the callback"]
    with pytest.raises(shardroute.InterfaceError):
        shardroute.Router.from_config(text, on_event="not a function")


def test_no_password_in_metrics_or_events(tmp_path):
    events = []
    text = ("connect_timeout_ms = 200\nconsistency.mode = any\n"
            f"[shard a]\nprimary = sqlite:{tmp_path}/a.db\n"
            "replica = postgresql://app:hunter2secret@127.0.0.1:1/db\n")
    try:
        r = shardroute.Router.from_config(text, on_event=events.append)
    except shardroute.NotSupportedError:
        pytest.skip("the PostgreSQL driver is not built")
    with r, r.session() as s:
        s.execute("SELECT 1", key=1)  # the replica cannot connect: the primary answers
        m = r.metrics()
    assert "hunter2secret" not in m and "postgresql://app:***@127.0.0.1:1/db" in m
    assert events and all("hunter2secret" not in str(e) for e in events)
    assert any("127.0.0.1:1" in e.skipped for e in events if e.kind == "statement")


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_trace_context_is_checked_and_kept(sqlite_router):
    with sqlite_router.session() as s:
        s.set_trace(TRACEPARENT, {"route": "/users/{id}", "note": "it's */ -- \\"})
        # SQLite sees a comment: statements, scatter and streams run as before.
        s.execute_all("CREATE TABLE tr (k INTEGER PRIMARY KEY, v TEXT)", intent="write")
        s.execute("INSERT INTO tr VALUES (?, ?)", (1, "one"), key=1)
        assert s.execute("SELECT v FROM tr WHERE k = ? -- at the end", (1,), key=1).fetchone() \
            == ("one",)
        assert s.execute("SELECT v FROM tr WHERE k = 1;", key=1).fetchone() == ("one",)
        assert s.execute_all("SELECT count(*) FROM tr").fetchone() == (1,)
        with s.stream_all("SELECT k FROM tr") as st:
            assert [k for (k,) in st] == [1]
        bad = [
            (TRACEPARENT.upper(), None, "lowercase hex"),
            ("ff" + TRACEPARENT[2:], None, "version ff"),
            (TRACEPARENT + "0", None, "after its 2-digit flags"),
            ("00-" + "0" * 32 + TRACEPARENT[35:], None, "all-zero trace-id"),
            (TRACEPARENT, {"a b": "v"}, "tag 1"),
            (TRACEPARENT, {"traceparent": "v"}, "traceparent"),
            (TRACEPARENT, {"k": "v" * 257}, "longer than 256"),
            (TRACEPARENT, {f"k{i}": "v" for i in range(17)}, "more than 16"),
        ]
        for tp, tags, what in bad:
            with pytest.raises(shardroute.InterfaceError, match=re.escape(what)) as e:
                s.set_trace(tp, tags)
            assert e.value.status_name == "SR_EINVAL"
        # Checked by the binding before the library sees them.
        for tp, tags in ((b"00-", None), (TRACEPARENT, [("k", "v")]), (TRACEPARENT, {"k": 1}),
                         (TRACEPARENT, {"k": "a\0b"})):
            with pytest.raises(shardroute.InterfaceError):
                s.set_trace(tp, tags)
        # The context set first is still in place, and clearing works (None or "").
        assert s.execute("SELECT v FROM tr WHERE k = 1", key=1).fetchone() == ("one",)
        s.set_trace(None)
        s.set_trace("", {"ignored": "when clearing"})
        assert s.execute("SELECT v FROM tr WHERE k = 1", key=1).fetchone() == ("one",)


def test_reload_swaps_the_topology_and_keeps_the_callback(tmp_path):
    events = []
    one = f"[shard a]\nprimary = sqlite:{tmp_path}/a.db\n"
    two = one + f"[shard b]\nprimary = sqlite:{tmp_path}/b.db\n"
    with shardroute.Router.from_config(one, on_event=events.append) as r, r.session() as s:
        assert (r.version, r.nshards) == (1, 1)
        s.execute("CREATE TABLE t (k INTEGER)", shard=0, intent="write")
        r.reload(two)
        assert (r.version, r.nshards, r.shard_name(1)) == (2, 2, "b")
        s.execute("CREATE TABLE t (k INTEGER)", shard=1, intent="write")  # the session moved
        assert events[-1].shard_name == "b"  # events go on after the reload
        with pytest.raises(shardroute.InterfaceError, match="no primary"):
            r.reload("[shard c]\n")
        assert r.version == 2 and r.nshards == 2  # a refused reload changes nothing
        r.reload({"shards": {"a": {"primary": f"sqlite:{tmp_path}/a.db"}}})
        conf = tmp_path / "sr.conf"
        conf.write_text(two)
        r.reload_file(conf)
        assert (r.version, r.nshards) == (4, 2)
        assert s.execute("SELECT count(*) FROM t", shard=1).fetchone() == (0,)
