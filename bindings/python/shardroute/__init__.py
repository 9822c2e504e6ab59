"""shardroute from Python: route SQL statements to shards, in process.

The application passes a statement and a shard key; the library maps the key
to a shard, sends writes to that shard's primary and spreads reads over its
healthy replicas (PostgreSQL, MariaDB/MySQL, SQLite), with read-your-writes
consistency that travels between processes as a token.

    import shardroute

    with shardroute.Router.from_config('''
        [shard s0]
        primary = sqlite:/tmp/s0.db
        [shard s1]
        primary = sqlite:/tmp/s1.db
    ''') as router, router.session() as s:
        s.execute_all("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
        s.execute("INSERT INTO users VALUES (?, ?)", (42, "ada"), key=42)
        print(s.execute("SELECT name FROM users WHERE id = ?", (42,), key=42).fetchone())

Shape: PEP 249 where shard keys allow it (``paramstyle`` "qmark", the
exception classes, a cursor-like ``Result`` with ``description``,
``rowcount`` and ``fetch*``). The deviations: statements run on a
``Session`` (there is no ``connect()``: a session borrows pooled
connections per statement), every statement names its shard key (``key=``)
or a shard (``shard=``), or runs on all shards (``execute_all``), and
transactions are explicit (``with session.transaction(key):``) instead of
implicit on the first statement.

Threads: one ``Router`` may be shared by any number of threads; a
``Session`` is for one thread at a time (calls from several threads are
serialised, never interleaved). Blocking calls release the GIL.

The C library is ``libshardroute`` (found through ``SHARDROUTE_LIBRARY``,
the install location, or the system's library path).
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import threading as _threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Mapping, NamedTuple, Optional, Sequence, Union

from ._ffi import (
    MERGE_SPEC_VERSION as _MERGE_SPEC_VERSION,
    NODE_INFO_VERSION as _NODE_INFO_VERSION,
    READ_OPTS_VERSION as _READ_OPTS_VERSION,
    SCATTER_OPTS_VERSION as _SCATTER_OPTS_VERSION,
    ffi as _ffi,
    lib as _lib,
)

__all__ = [
    "apilevel", "threadsafety", "paramstyle", "version",
    "Router", "Session", "Result", "Stream", "NodeInfo", "Column", "Event",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
]

#: PEP 249: the DB API level this module follows (with the deviations above).
apilevel = "2.0"
#: PEP 249: threads may share the module and a Router, not a Session.
threadsafety = 1
#: PEP 249: ``?`` placeholders (each backend gets its own form).
paramstyle = "qmark"


def version() -> str:
    """The C library's version, "MAJOR.MINOR.PATCH"."""
    return _text(_lib.sr_version())


# ---- exceptions ---------------------------------------------------------------------------


class Warning(Exception):  # noqa: A001 - the PEP 249 name
    """PEP 249's Warning (not raised by this module)."""


class Error(Exception):
    """Base of every error this module raises.

    Attributes: ``status`` (the C status, e.g. -7), ``status_name``
    ("SR_EQUERY"), ``sqlstate`` (five characters from the database, or ""),
    ``shard`` / ``shard_name`` (where it failed, or None), ``node`` /
    ``node_uri`` (the node's index in its shard and its URI without the
    password, or None). ``str(e)`` is the library's message (passwords are
    never in it).
    """

    def __init__(self, message: str, status: Optional[int] = None, sqlstate: str = "",
                 shard: Optional[int] = None, shard_name: Optional[str] = None,
                 node: Optional[int] = None, node_uri: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.status_name = _STATUS_NAMES.get(status) if status is not None else None
        self.sqlstate = sqlstate
        self.shard = shard
        self.shard_name = shard_name
        self.node = node
        self.node_uri = node_uri


class InterfaceError(Error):
    """Misuse of the interface: bad arguments, closed objects, a session used wrongly."""


class DatabaseError(Error):
    """An error of the database or of reaching it."""


class DataError(DatabaseError):
    """A value the database could not take (SQLSTATE class 22)."""


class OperationalError(DatabaseError):
    """Connections, timeouts, unavailable or stale nodes, partial scatters, memory."""


class IntegrityError(DatabaseError):
    """A constraint failed (SQLSTATE class 23)."""


class InternalError(DatabaseError):
    """The database's internal error (SQLSTATE class XX)."""


class ProgrammingError(DatabaseError):
    """Bad SQL (SQLSTATE class 42), an unmergeable scatter, a key no shard owns,
    transaction misuse."""


class NotSupportedError(DatabaseError):
    """A driver that is not built, or a feature the database lacks (SQLSTATE class 0A)."""


_STATUS_NAMES = {
    0: "SR_OK", -1: "SR_EINVAL", -2: "SR_ENOMEM", -3: "SR_ENOSHARD", -4: "SR_EUNAVAILABLE",
    -5: "SR_ETIMEOUT", -6: "SR_ECONNECT", -7: "SR_EQUERY", -8: "SR_ESTALE", -9: "SR_EDRIVER",
    -10: "SR_ETXN", -11: "SR_EBUSY", -12: "SR_EPARTIAL", -13: "SR_EMISUSE",
}

_STATUS_CLASSES = {
    -2: OperationalError, -3: ProgrammingError, -4: OperationalError, -5: OperationalError,
    -6: OperationalError, -8: OperationalError, -9: NotSupportedError, -10: ProgrammingError,
    -11: OperationalError, -12: OperationalError, -13: InterfaceError,
}

_SQLSTATE_CLASSES = {
    "22": DataError, "23": IntegrityError, "42": ProgrammingError, "0A": NotSupportedError,
    "XX": InternalError, "08": OperationalError, "40": OperationalError, "57": OperationalError,
    "53": OperationalError, "HY": DatabaseError,
}


def _error_class(status: int, sqlstate: str, statement: bool):
    if status == _lib.SR_EQUERY:
        return _SQLSTATE_CLASSES.get(sqlstate[:2], DatabaseError)
    if status == _lib.SR_EINVAL:
        # In a statement call, SR_EINVAL is about the statement (a placeholder count, a
        # scatter that cannot be merged); elsewhere about the arguments.
        return ProgrammingError if statement else InterfaceError
    return _STATUS_CLASSES.get(status, DatabaseError)


def _text(p) -> str:
    return "" if p == _ffi.NULL else _ffi.string(p).decode("utf-8", "replace")


# ---- values -----------------------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

_TYPE_NAMES = {
    0: "UNKNOWN", 1: "NULL", 2: "INT", 3: "FLOAT", 4: "NUMERIC", 5: "TEXT", 6: "BYTES",
    7: "BOOL", 8: "DATETIME",
}


def _utf8(s: str, what: str) -> bytes:
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InterfaceError(f"{what}: text that is not valid Unicode ({e.reason})") from None
    if b"\0" in b:
        raise InterfaceError(f"{what}: text with a NUL character (send it as bytes)")
    return b


def _key(key, keep: list):
    """An sr_key for an int, str (its UTF-8 bytes, as sr_key_text) or bytes key."""
    k = _ffi.new("sr_key *")
    if isinstance(key, bool) or key is None:
        raise InterfaceError(f"a shard key is an int, str or bytes, not {type(key).__name__}")
    if isinstance(key, int):
        if not _INT64_MIN <= key <= _INT64_MAX:
            raise InterfaceError(f"shard key {key} does not fit a signed 64-bit integer")
        k.kind = _lib.SR_KEY_INT
        k.i = key
        return k[0]
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogateescape")
    if isinstance(key, (bytes, bytearray, memoryview)):
        buf = _ffi.from_buffer(bytes(key))
        keep.append(buf)
        k.kind = _lib.SR_KEY_BYTES
        k.ptr = buf
        k.len = len(buf)
        return k[0]
    raise InterfaceError(f"a shard key is an int, str or bytes, not {type(key).__name__}")


def _values(params: Optional[Sequence[Any]], keep: list):
    """The statement's parameters as sr_value[] (None: no parameters)."""
    if params is None:
        return 0, _ffi.NULL
    if type(params) not in (tuple, list) and (
            isinstance(params, (str, bytes, bytearray, Mapping)) or
            not hasattr(params, "__len__")):
        raise InterfaceError("parameters are a sequence (a tuple or list) matching the ? "
                             f"placeholders, not {type(params).__name__}")
    n = len(params)
    if n == 0:
        return 0, _ffi.NULL
    vals = _ffi.new("sr_value[]", n)
    keep.append(vals)
    for i, v in enumerate(params):
        out = vals[i]
        if v is None:
            out.type = _lib.SR_TYPE_NULL
        elif isinstance(v, bool):
            out.type = _lib.SR_TYPE_BOOL
            out.i = int(v)
        elif isinstance(v, int):
            if not _INT64_MIN <= v <= _INT64_MAX:
                raise InterfaceError(f"parameter {i + 1}: {v} does not fit a signed 64-bit "
                                     "integer (pass a decimal.Decimal for a wider number)")
            out.type = _lib.SR_TYPE_INT
            out.i = v
        elif isinstance(v, float):
            out.type = _lib.SR_TYPE_FLOAT
            out.f = v
        else:
            if isinstance(v, _decimal.Decimal):
                if not v.is_finite():
                    raise InterfaceError(f"parameter {i + 1}: {v} is not a finite decimal")
                t, b = _lib.SR_TYPE_NUMERIC, str(v).encode()
            elif isinstance(v, str):
                t, b = _lib.SR_TYPE_TEXT, _utf8(v, f"parameter {i + 1}")
            elif isinstance(v, (bytes, bytearray, memoryview)):
                t, b = _lib.SR_TYPE_BYTES, bytes(v)
            elif isinstance(v, _dt.datetime):
                t, b = _lib.SR_TYPE_DATETIME, v.isoformat(sep=" ").encode()
            elif isinstance(v, (_dt.date, _dt.time)):
                t, b = _lib.SR_TYPE_DATETIME, v.isoformat().encode()
            else:
                raise InterfaceError(f"parameter {i + 1}: cannot send a {type(v).__name__} "
                                     "(None, bool, int, float, Decimal, str, bytes, date, time "
                                     "and datetime can be sent)")
            buf = _ffi.from_buffer(b)
            keep.append(buf)
            out.type = t
            out.p = buf
            out.len = len(b)
    return n, vals


class _Scratch:
    """Out-parameters reused by every conversion of one session (its calls are serialised)."""

    __slots__ = ("i64", "dbl", "size", "result", "cursor", "row")

    def __init__(self):
        self.i64 = _ffi.new("int64_t *")
        self.dbl = _ffi.new("double *")
        self.size = _ffi.new("size_t *")
        self.result = _ffi.new("sr_result **")
        self.cursor = _ffi.new("sr_cursor **")
        self.row = _ffi.new("int *")


_is_null, _int64, _double = _lib.sr_result_is_null, _lib.sr_result_int64, _lib.sr_result_double
_value_p, _length = _lib.sr_result_value, _lib.sr_result_length
_T_INT, _T_FLOAT, _T_BOOL = _lib.SR_TYPE_INT, _lib.SR_TYPE_FLOAT, _lib.SR_TYPE_BOOL
_T_BYTES, _T_NUMERIC = _lib.SR_TYPE_BYTES, _lib.SR_TYPE_NUMERIC


def _value(res, row: int, col: int, ctype: int, sc: "_Scratch"):
    """One value of a C result as the Python type its column type calls for."""
    if _is_null(res, row, col):
        return None
    if ctype == _T_INT:
        if _int64(res, row, col, sc.i64) == 0:
            return sc.i64[0]
    elif ctype == _T_FLOAT:
        if _double(res, row, col, sc.dbl) == 0:
            return sc.dbl[0]
    elif ctype == _T_BOOL:
        if _int64(res, row, col, sc.i64) == 0:
            return bool(sc.i64[0])
    raw = _ffi.unpack(_value_p(res, row, col), _length(res, row, col))
    if ctype == _T_BYTES:
        return raw
    if ctype == _T_NUMERIC:
        try:
            return _decimal.Decimal(raw.decode("ascii"))
        except (UnicodeDecodeError, _decimal.InvalidOperation):
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # text that is not UTF-8 (a server with another character set): the bytes


class Column(NamedTuple):
    """One entry of ``Result.description``: PEP 249's seven items.

    ``type_code`` is the portable type ("INT", "FLOAT", "NUMERIC", "TEXT",
    "BYTES", "BOOL", "DATETIME", "UNKNOWN"); the other five are None.
    """

    name: str
    type_code: str
    display_size: None = None
    internal_size: None = None
    precision: None = None
    scale: None = None
    null_ok: None = None


def _columns(res):
    n = _lib.sr_result_ncols(res)
    types = [_lib.sr_result_coltype(res, c) for c in range(n)]
    cols = tuple([Column(_ffi.string(_lib.sr_result_colname(res, c)).decode("utf-8", "replace"),
                         _TYPE_NAMES.get(types[c], "UNKNOWN")) for c in range(n)])
    return cols, types


class Result:
    """The rows of one statement, read into Python objects: valid after its
    session (or router) is closed.

    Cursor-like: ``fetchone()``, ``fetchmany(n)``, ``fetchall()`` and
    iteration go through the rows once; ``rows`` holds them all.
    ``description`` is a tuple of ``Column``; ``rowcount`` is the rows
    affected by a write, else the number of rows. ``shards[i]`` is the shard
    row i came from (-1 for a row merged from several shards);
    ``failed_shards`` lists the shards that failed (a partial scatter).
    Values: int, float, decimal.Decimal (NUMERIC), str (TEXT, DATETIME as
    the server prints it), bytes (BYTES, or text that is not UTF-8), bool,
    None.
    """

    arraysize = 1

    def __init__(self, res, sc: "_Scratch"):
        self.description, types = _columns(res)
        nrows = _lib.sr_result_nrows(res)
        ncols = len(types)
        cols = tuple(enumerate(types))
        self.rows = [tuple([_value(res, r, c, t, sc) for c, t in cols]) for r in range(nrows)]
        self.shards = [_lib.sr_result_shard(res, r) for r in range(nrows)]
        affected = _lib.sr_result_affected(res)
        self.rowcount = affected if ncols == 0 else nrows
        failed = []
        while True:
            f = _lib.sr_result_failed_shard(res, len(failed))
            if f < 0:
                break
            failed.append(f)
        self.failed_shards = failed
        self._next = 0

    def fetchone(self) -> Optional[tuple]:
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchmany(self, size: Optional[int] = None) -> list:
        size = self.arraysize if size is None else size
        out = self.rows[self._next:self._next + size]
        self._next += len(out)
        return out

    def fetchall(self) -> list:
        out = self.rows[self._next:]
        self._next = len(self.rows)
        return out

    def __iter__(self) -> Iterator[tuple]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self):
        return f"<shardroute.Result {len(self.rows)} rows, {len(self.description)} columns>"


# ---- router ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    """A snapshot of one node (``Router.nodes()``)."""

    shard: int
    index: int
    role: str  # "primary" or "replica"
    uri: str  # without its password
    healthy: bool
    statements: int
    errors: int
    in_flight: int
    connections: int
    ewma_latency_ms: float
    role_mismatch: bool
    ejections: int
    lag_ms: int  # -1: replication broken, -2: not measured
    position_checks: int
    stale_checks: int
    replay_delay_us: int


@dataclass(frozen=True)
class Event:
    """A routing event, passed to the ``on_event`` callback of a Router's constructor.

    ``kind`` is "statement" (a statement ended on a shard) or "health" (a node was
    ejected, re-admitted or failed its probe). Statement events say where the statement
    went (``shard``, ``node``, ``node_uri``, ``role``), why (``reason``), why each other
    node was not used (``skipped``), and how it went (``status`` 0 or a negative
    status, ``sqlstate``, ``retries``, ``wait_us``, ``duration_us``). No field holds a
    password. See docs/observability.md.
    """

    kind: str
    shard: int  # -1: none
    shard_name: str
    node: int  # index within the shard, -1: none
    node_uri: str
    role: str
    intent: str  # "read" or "write" (statement events)
    reason: str
    skipped: str
    retries: int
    wait_us: int
    duration_us: int
    status: int
    status_name: str
    sqlstate: str
    sql: str
    health: str  # "ejected", "readmitted", "probe_failed" (health events)
    detail: str


def _event_from_c(ev) -> Event:
    statement = ev.kind == _lib.SR_EVENT_STATEMENT
    return Event(
        "statement" if statement else "health", ev.shard, _text(ev.shard_name), ev.node,
        _text(ev.node_uri), "primary" if ev.role == _lib.SR_PRIMARY else "replica",
        ("write" if ev.intent == _lib.SR_WRITE else "read") if statement else "",
        _text(ev.reason), _text(ev.skipped), ev.retries, ev.wait_us, ev.duration_us, ev.status,
        _STATUS_NAMES.get(ev.status, "") if statement else "", _text(ev.sqlstate),
        _text(ev.sql), _text(ev.health), _text(ev.detail))


class _StreamCore:
    """A stream's C cursor, owned by its session's core (so that a session is never freed
    with a cursor open, whatever order the garbage collector finalises them in)."""

    __slots__ = ("c",)

    def __init__(self, handle):
        self.c = handle

    def close(self) -> None:
        if self.c is not None:
            _lib.sr_cursor_close(self.c)
            self.c = None


class _SessionCore:
    """A session's C handle, its lock and its streams' cores, owned by the router's core
    set: the router closes every session still open before it closes itself, also when
    the garbage collector finalises the Router before its Sessions."""

    __slots__ = ("s", "router", "lock", "streams", "owner")

    def __init__(self, handle, router, owner: set):
        self.s = handle
        # The C router: valid while this session is open (the Router closes its sessions,
        # taking their locks, before it closes the C router).
        self.router = router
        self.lock = _threading.RLock()
        self.streams: set = set()
        self.owner = owner

    def close(self) -> None:
        with self.lock:
            if self.s is None:
                return
            for st in list(self.streams):
                st.close()
            self.streams.clear()
            _lib.sr_session_free(self.s)
            self.s = None
            self.owner.discard(self)


class _Closing:
    """``with`` closes the object at the end of the block."""

    def close(self) -> None:  # pragma: no cover - every subclass has its own
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _text_filler(text):
    """fill(c) for configuration text in the file syntax."""
    if not isinstance(text, str):
        raise InterfaceError(f"configuration text is a str, not {type(text).__name__}")
    b = _utf8(text, "configuration")

    def fill(c):
        rc = _lib.sr_config_parse(c, b)
        if rc != 0:
            raise _config_error(c, rc)

    return fill


def _file_filler(path):
    """fill(c) for a configuration file."""
    import os

    b = os.fsencode(path)
    if b"\0" in b:
        raise InterfaceError("a path with a NUL character")

    def fill(c):
        rc = _lib.sr_config_load_file(c, b)
        if rc != 0:
            raise _config_error(c, rc)

    return fill


def _dict_filler(config):
    """fill(c) for the dict form (Router.from_dict)."""
    if not isinstance(config, Mapping):
        raise InterfaceError(f"from_dict takes a dict, not {type(config).__name__}")
    unknown = set(config) - {"options", "shards", "pins"}
    if unknown:
        raise InterfaceError(f"unknown configuration keys: {', '.join(sorted(unknown))} "
                             "(options, shards, pins)")
    pins = config.get("pins") or {}
    if not isinstance(pins, Mapping):
        raise InterfaceError("'pins' is a dict of key -> shard name")
    options = config.get("options") or {}
    shards = config.get("shards") or {}
    if not isinstance(options, Mapping) or not isinstance(shards, Mapping):
        raise InterfaceError("'options' and 'shards' are dicts")

    def s(v, what):
        if isinstance(v, bool):
            v = "true" if v else "false"
        return _utf8(str(v), what)

    def check(c, rc):
        if rc != 0:
            raise _config_error(c, rc)

    def fill(c):
        for k, v in options.items():
            check(c, _lib.sr_config_set(c, s(k, "option"), s(v, f"option {k}")))
        for name, spec in shards.items():
            if not isinstance(spec, Mapping):
                raise InterfaceError(f"shard {name!r}: a dict with 'primary' and 'replicas'")
            bn = s(name, "shard name")
            check(c, _lib.sr_config_add_shard(c, bn))
            if "primary" not in spec:
                raise InterfaceError(f"shard {name!r} has no 'primary'")
            check(c, _lib.sr_config_add_node(c, bn, _lib.SR_PRIMARY,
                                              s(spec["primary"], "uri"), 1))
            replicas = spec.get("replicas") or []
            if isinstance(replicas, (str, bytes)):
                replicas = [replicas]
            for rep in replicas:
                uri, weight = (rep if isinstance(rep, (tuple, list)) else (rep, 1))
                check(c, _lib.sr_config_add_node(c, bn, _lib.SR_REPLICA, s(uri, "uri"),
                                                  int(weight)))
            for attr, v in spec.items():
                if attr in ("primary", "replicas"):
                    continue
                check(c, _lib.sr_config_shard_set(c, bn, s(attr, "attribute"),
                                                   s(v, f"shard {name} {attr}")))
        for key, shard in pins.items():
            keep: list = []
            check(c, _lib.sr_config_pin_key(c, _key(key, keep), s(shard, "shard name")))

    return fill


class Router(_Closing):
    """A router: the shards, their nodes and pools. Share one between threads.

    Build it with ``Router.from_config(text)``, ``Router.from_file(path)`` or
    ``Router.from_dict(...)``; close it with ``close()`` or a ``with``
    block (closing it closes its sessions and their streams first).
    """

    def __init__(self, _handle=None):
        if _handle is None:
            raise InterfaceError("use Router.from_config, Router.from_file or Router.from_dict")
        self._r = _handle
        # Calls in progress on the C router (close() waits for them: cffi releases the GIL,
        # so another thread may be inside one while this one closes).
        self._event_cb = None  # set by _open when on_event is given
        self._cond = _threading.Condition()
        self._calls = 0
        self._cores: set = set()
        # Per shard: its primary is a PostgreSQL or MariaDB server. Statements there whose
        # parameters are all int or str take the library's text path, which reuses the
        # connection's prepared statements (the typed path parses every statement anew on
        # PostgreSQL); the server converts the text to the column's type, as psycopg2's
        # literals are. SQLite keeps typed binds: text there would stay text.
        self._server = [n.uri.startswith(_SERVER_SCHEMES) for n in self._nodes(_handle, None)
                        if n.index == 0]

    def _server_shard(self, shard: int) -> bool:
        return 0 <= shard < len(self._server) and self._server[shard]

    # constructors
    @classmethod
    def _open(cls, fill, on_event=None) -> "Router":
        if on_event is not None and not callable(on_event):
            raise InterfaceError("on_event is a callable taking an Event")
        c = _lib.sr_config_new()
        if c == _ffi.NULL:
            raise OperationalError("out of memory", _lib.SR_ENOMEM)
        try:
            fill(c)
            cb = None
            if on_event is not None:
                # Called on whichever thread ran the statement (cffi takes the GIL); an
                # exception in on_event is printed to stderr by cffi and goes no further.
                @_ffi.callback("void(void *, const sr_event *)")
                def cb(_ud, ev):
                    on_event(_event_from_c(ev))

                rc = _lib.sr_config_set_event_fn(c, cb, _ffi.NULL)
                if rc != 0:
                    raise _config_error(c, rc)
            out = _ffi.new("sr_router **")
            rc = _lib.sr_router_open(c, out)
            if rc != 0:
                raise _config_error(c, rc)
            router = cls(out[0])
            router._event_cb = cb  # the C router calls it until it is closed
            return router
        finally:
            _lib.sr_config_free(c)

    @classmethod
    def from_config(cls, text: str, on_event: Optional[Callable[["Event"], None]] = None
                    ) -> "Router":
        """A router from configuration text in the file syntax (docs/guide.md).

        ``on_event``, in every constructor: called with an ``Event`` for each statement
        (one in ``events.sample``) and each health transition, on the thread that ran it;
        keep it short (the statement waits for it)."""
        return cls._open(_text_filler(text), on_event)

    @classmethod
    def from_file(cls, path: Union[str, "os.PathLike[str]"],
                  on_event: Optional[Callable[["Event"], None]] = None) -> "Router":
        """A router from a configuration file."""
        return cls._open(_file_filler(path), on_event)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any],
                  on_event: Optional[Callable[["Event"], None]] = None) -> "Router":
        """A router from a dict::

            {"options": {"pool.max_size": 8, "statement_timeout_ms": 2000},
             "shards": {"s0": {"primary": "postgresql://app@db0/app",
                               "replicas": ["postgresql://app@db0r/app"],
                               "keyrange": "-80"},           # other shard attributes
                        "s1": {...}}}

        Options by their documented names (values are converted with str();
        True/False become "true"/"false"). Shards keep the dict's order. A
        replica may be a (uri, weight) pair. ``"pins": {key: shard_name}``
        pins keys (int, str or bytes) to shards, overriding the distribution.
        """
        return cls._open(_dict_filler(config), on_event)

    # topology changes
    def reload(self, config: Union[str, Mapping[str, Any]]) -> None:
        """Replaces the topology with ``config`` (text in the file syntax, or the dict of
        ``from_dict``) without closing the router: checked completely first (a bad one
        changes nothing and raises), then swapped in for the calls that start afterwards;
        unchanged nodes keep their connections (``sr_router_reload``). The router's
        ``on_event`` callback stays."""
        if isinstance(config, Mapping):
            self._reload(_dict_filler(config))
        else:
            self._reload(_text_filler(config))

    def reload_file(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """``reload`` from a configuration file."""
        self._reload(_file_filler(path))

    def _reload(self, fill) -> None:
        c = _lib.sr_config_new()
        if c == _ffi.NULL:
            raise OperationalError("out of memory", _lib.SR_ENOMEM)
        try:
            fill(c)
            if self._event_cb is not None:
                rc = _lib.sr_config_set_event_fn(c, self._event_cb, _ffi.NULL)
                if rc != 0:
                    raise _config_error(c, rc)
            with self._call() as r:
                rc = _lib.sr_router_reload(r, c)
                if rc != 0:
                    raise _config_error(c, rc)
                self._server = [n.uri.startswith(_SERVER_SCHEMES) for n in self._nodes(r, None)
                                if n.index == 0]
        finally:
            _lib.sr_config_free(c)

    @property
    def version(self) -> int:
        """The topology version: 1 when opened, one more for each reload."""
        with self._call() as r:
            return _lib.sr_router_version(r)

    # lifetime
    def _handle(self):
        if self._r is None:
            raise InterfaceError("the router is closed")
        return self._r

    def _call(self):
        """``with self._call() as r:`` a C call on the router that close() waits for."""
        return _RouterCall(self)

    def close(self) -> None:
        """Closes the router and every session still open on it (waiting for calls in
        progress on other threads). Idempotent."""
        with self._cond:
            if self._r is None:
                return
            r, self._r = self._r, None  # new calls now raise
            while self._calls:
                self._cond.wait()
        for core in list(self._cores):
            core.close()
        _lib.sr_router_close(r)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return self._r is None

    # topology
    def session(self) -> "Session":
        """A new session (for one thread at a time); a context manager."""
        with self._call() as r:
            out = _ffi.new("sr_session **")
            rc = _lib.sr_session_new(r, out)
            if rc != 0:
                raise _error_class(rc, "", False)(_text(_lib.sr_strerror(rc)), rc)
            core = _SessionCore(out[0], r, self._cores)
            with self._cond:
                self._cores.add(core)
            return Session(self, core)

    def shard_for(self, key: Union[int, str, bytes]) -> int:
        """The index of the shard that owns `key` (no database is asked)."""
        keep: list = []
        k = _key(key, keep)
        with self._call() as r:
            rc = _lib.sr_router_shard_for(r, k)
        if rc < 0:
            raise _error_class(rc, "", False)(
                f"no shard for key {key!r}: {_text(_lib.sr_strerror(rc))}", rc)
        return rc

    @property
    def nshards(self) -> int:
        with self._call() as r:
            return _lib.sr_router_nshards(r)

    def shard_name(self, shard: int) -> str:
        with self._call() as r:
            p = _lib.sr_router_shard_name(r, _index(shard, "shard"))
            if p == _ffi.NULL:
                raise ProgrammingError(f"no shard {shard}", _lib.SR_ENOSHARD)
            return _text(p)

    def nodes(self, shard: Optional[int] = None) -> list:
        """NodeInfo for every node (of one shard, or of all)."""
        with self._call() as r:
            return self._nodes(r, shard)

    def _nodes(self, r, shard) -> list:
        shards = range(_lib.sr_router_nshards(r)) if shard is None else [_index(shard, "shard")]
        out = []
        for sh in shards:
            n = _lib.sr_router_nnodes(r, sh)
            if n < 0:
                raise ProgrammingError(f"no shard {sh}", n)
            for i in range(n):
                info = _ffi.new("sr_node_info *")
                info.version = _NODE_INFO_VERSION
                rc = _lib.sr_router_node_info(r, sh, i, info)
                if rc != 0:
                    raise _error_class(rc, "", False)(_text(_lib.sr_strerror(rc)), rc)
                out.append(NodeInfo(
                    sh, i, "primary" if info.role == _lib.SR_PRIMARY else "replica",
                    _text(info.uri), bool(info.healthy), info.statements, info.errors,
                    info.in_flight, info.connections, info.ewma_latency_ms,
                    bool(info.role_mismatch), info.ejections, info.lag_ms, info.position_checks,
                    info.stale_checks, info.replay_delay_us))
        return out

    def metrics(self) -> str:
        """The router's metrics in the Prometheus text format (docs/observability.md)."""
        size = 65536
        with self._call() as r:
            while True:
                buf = _ffi.new("char[]", size)
                n = _lib.sr_router_metrics_text(r, buf, size)
                if n < 0:
                    raise _error_class(n, "", False)(_text(_lib.sr_strerror(n)), n)
                if n < size:
                    return _ffi.string(buf, n).decode("utf-8", "replace")
                size = n + 4096  # it may grow in between

    def maintain(self) -> None:
        """One round of health checks, for programs without the prober thread."""
        with self._call() as r:
            rc = _lib.sr_router_maintain(r)
        if rc < 0:
            raise _error_class(rc, "", False)(_text(_lib.sr_strerror(rc)), rc)


class _RouterCall:
    __slots__ = ("router",)

    def __init__(self, router: "Router"):
        self.router = router

    def __enter__(self):
        rt = self.router
        with rt._cond:
            if rt._r is None:
                raise InterfaceError("the router is closed")
            rt._calls += 1
            return rt._r

    def __exit__(self, *exc):
        rt = self.router
        with rt._cond:
            rt._calls -= 1
            if not rt._calls:
                rt._cond.notify_all()


def _index(i, what) -> int:
    if isinstance(i, bool) or not isinstance(i, int):
        raise InterfaceError(f"a {what} index is an int, not {type(i).__name__}")
    if not -(1 << 31) <= i < (1 << 31):
        raise ProgrammingError(f"no {what} {i}", _lib.SR_ENOSHARD)
    return i


def _config_error(c, rc) -> Error:
    msg = _text(_lib.sr_config_errmsg(c)) or _text(_lib.sr_strerror(rc))
    return _error_class(rc, "", False)(msg, rc)


# ---- session -------------------------------------------------------------------------

_INTENTS = {"auto": 0, "read": 1, "write": 2}
_CONSISTENCY = {"any": 0, "monotonic": 1, "read_your_writes": 2, "primary": 3}


def _intent(intent) -> int:
    try:
        return _INTENTS[intent]
    except (KeyError, TypeError):
        raise InterfaceError(f"intent is 'auto', 'read' or 'write', not {intent!r}") from None


class Session(_Closing):
    """A session: the statements of one thread, its consistency and its
    transaction. Get one from ``Router.session()``; close it (or use
    ``with``) when done. Results stay valid after it is closed.
    """

    def __init__(self, router: Router, core: _SessionCore):
        self._router = router
        self._core = core
        self._lock = core.lock
        self._consistency = None
        self._max_lag_ms = None
        self._sc = _Scratch()

    # lifetime
    @property
    def _s(self):
        return self._core.s

    def _handle(self):
        s = self._core.s
        if s is None:
            raise InterfaceError("the session is closed")
        return s

    def close(self) -> None:
        """Closes the session (its open streams first; an open transaction is rolled
        back by the library). Idempotent."""
        self._core.close()

    @property
    def closed(self) -> bool:
        return self._core.s is None

    def __del__(self):
        try:
            self._core.close()
        except Exception:
            pass

    # errors
    def _raise(self, rc: int, statement: bool = True):
        s = self._s
        msg = _text(_lib.sr_session_errmsg(s)) if rc != _lib.SR_EMISUSE else ""
        sqlstate = _text(_lib.sr_session_sqlstate(s)) if rc != _lib.SR_EMISUSE else ""
        shard = node = None
        shard_name = node_uri = None
        if rc != _lib.SR_EMISUSE:
            where = _ffi.new("int[2]")
            _lib.sr_session_error_location(s, where, where + 1)
            if where[0] >= 0:
                shard = where[0]
                shard_name = _text(_lib.sr_router_shard_name(self._core.router, shard))
                if where[1] >= 0:
                    node = where[1]
                    info = _ffi.new("sr_node_info *")
                    info.version = _NODE_INFO_VERSION
                    if _lib.sr_router_node_info(self._core.router, shard, node, info) == 0:
                        node_uri = _text(info.uri)
        if not msg:
            msg = _text(_lib.sr_strerror(rc))
        raise _error_class(rc, sqlstate, statement)(msg, rc, sqlstate, shard, shard_name, node,
                                                    node_uri)

    # settings
    @property
    def consistency(self) -> Optional[str]:
        """"any", "monotonic", "read_your_writes" or "primary" (None: the router's default)."""
        return self._consistency

    @consistency.setter
    def consistency(self, mode: str) -> None:
        self._set("consistency", mode)
        self._consistency = mode

    @property
    def max_lag_ms(self) -> Optional[int]:
        """The lag bound of this session's reads (0: none; None: the router's)."""
        return self._max_lag_ms

    @max_lag_ms.setter
    def max_lag_ms(self, ms: Optional[int]) -> None:
        self._set("max_lag_ms", "default" if ms is None else str(_index(ms, "max_lag_ms")))
        self._max_lag_ms = ms

    def _set(self, option: str, value) -> None:
        if not isinstance(value, str):
            raise InterfaceError(f"{option} is a str, not {type(value).__name__}")
        with self._lock:
            rc = _lib.sr_session_set(self._handle(), option.encode(), _utf8(value, option))
            if rc != 0:
                self._raise(rc, statement=False)

    def set_affinity(self, key: Union[int, str, bytes]) -> None:
        """The key the ``affinity`` balance policy uses to pick this session's replica
        (by default each session gets its own)."""
        keep: list = []
        k = _key(key, keep)
        with self._lock:
            rc = _lib.sr_session_set_affinity(self._handle(), k)
            if rc != 0:
                self._raise(rc, statement=False)

    def set_trace(self, traceparent: Optional[str],
                  tags: Optional[Dict[str, str]] = None) -> None:
        """Sets the W3C trace context that every statement of this session carries to
        the server as an sqlcommenter comment (``/*k='v',traceparent='00-...'*/`` on a
        line of its own, visible in pg_stat_activity and the MariaDB process list), or
        clears it (``traceparent`` None or ""; ``tags`` are then ignored).

        ``traceparent`` is checked strictly ("00-" 32 lowercase hex digits "-" 16 "-" 2,
        ids not all zero); ``tags`` maps up to 16 keys of [A-Za-z0-9_.-] (1..64
        characters, not "traceparent") to str values of at most 256 UTF-8 bytes, written
        percent-encoded. A bad value raises InterfaceError saying which, and the session
        keeps its previous context. Each traceparent makes a new statement text, so
        traced statements are prepared anew rather than taken from the statement cache
        (see sr_session_set_trace in shardroute.h).
        """
        if traceparent is not None and not isinstance(traceparent, str):
            raise InterfaceError(f"a traceparent is a str or None, not "
                                 f"{type(traceparent).__name__}")
        if tags is not None and not isinstance(tags, dict):
            raise InterfaceError(f"trace tags are a dict, not {type(tags).__name__}")
        keep: list = []
        tp = _ffi.NULL
        ntags = 0
        arr = _ffi.NULL
        if traceparent:
            tp = _ffi.new("char[]", _utf8(traceparent, "traceparent"))
            items = list((tags or {}).items())
            ntags = len(items)
            arr = _ffi.new("const char *[]", max(1, 2 * ntags))
            for i, (k, v) in enumerate(items):
                if not isinstance(k, str) or not isinstance(v, str):
                    raise InterfaceError(f"trace tag {k!r}: keys and values are str, not "
                                         f"{type(k).__name__} and {type(v).__name__}")
                for j, text in enumerate((k, v)):
                    c = _ffi.new("char[]", _utf8(text, f"trace tag {k!r}"))
                    keep.append(c)
                    arr[2 * i + j] = c
        with self._lock:
            rc = _lib.sr_session_set_trace(self._handle(), tp, ntags, arr)
            if rc != 0:
                self._raise(rc, statement=False)

    @property
    def token(self) -> str:
        """The session's replication positions as a token for another session or
        process ("" before any write); assign a token to read what its session wrote."""
        with self._lock:
            p = _lib.sr_session_token(self._handle())
            if p == _ffi.NULL:
                raise OperationalError(_text(_lib.sr_session_errmsg(self._s)) or
                                       "no token", _lib.SR_EINVAL)
            return _text(p)

    @token.setter
    def token(self, token: str) -> None:
        if not isinstance(token, str):
            raise InterfaceError(f"a token is a str, not {type(token).__name__}")
        with self._lock:
            rc = _lib.sr_session_set_token(self._handle(), _utf8(token, "token"))
            if rc != 0:
                self._raise(rc, statement=False)

    # statements
    @staticmethod
    def _read_opts(max_lag_ms, consistency, keep):
        if max_lag_ms is None and consistency is None:
            return _ffi.NULL
        o = _ffi.new("sr_read_opts *")
        keep.append(o)
        o.version = _READ_OPTS_VERSION
        o.max_lag_ms = -1 if max_lag_ms is None else _index(max_lag_ms, "max_lag_ms")
        if consistency is None:
            o.consistency = -1
        elif consistency in _CONSISTENCY:
            o.consistency = _CONSISTENCY[consistency]
        else:
            raise InterfaceError(f"consistency is one of {', '.join(_CONSISTENCY)}, "
                                 f"not {consistency!r}")
        return o

    def execute(self, sql: str, params: Optional[Sequence[Any]] = None, *,
                key: Union[int, str, bytes, None] = None, shard: Optional[int] = None,
                intent: str = "auto", max_lag_ms: Optional[int] = None,
                consistency: Optional[str] = None) -> Result:
        """Runs one statement on the shard that owns `key` (or on shard index
        `shard`) and returns its rows. `params` fill the ``?`` placeholders
        (None, bool, int, float, Decimal, str, bytes, date/time). `intent`
        "auto" lets the SQL decide (a read only when certain), "read" may go
        to a replica, "write" goes to the primary. `max_lag_ms` and
        `consistency` override the session's for this read.
        """
        sqlb = _sql(sql)
        keep: list = []
        it = _intent(intent)
        if (key is None) == (shard is None):
            raise InterfaceError("execute() needs exactly one of key= and shard=")
        with self._lock:
            s = self._handle()
            out = self._sc.result
            out[0] = _ffi.NULL
            if shard is not None:
                if max_lag_ms is not None or consistency is not None:
                    raise InterfaceError("max_lag_ms and consistency go with key=, not shard=")
                texts = _texts(params, keep)
                rc = _lib.sr_exec_shard(s, _index(shard, "shard"), it, sqlb, len(texts),
                                        texts if texts else _ffi.NULL, out)
            else:
                k = _key(key, keep)
                opts = self._read_opts(max_lag_ms, consistency, keep)
                texts = _plain_texts(params, keep)
                if texts is not None and self._router._server_shard(_lib.sr_router_shard_for(
                        self._core.router, k)):
                    rc = _lib.sr_exec_opts(s, k, it, opts, sqlb, len(params), texts, out)
                else:
                    n, vals = _values(params, keep)
                    rc = _lib.sr_exec_values(s, k, it, opts, sqlb, n, vals, out)
            return self._result(rc, out[0])

    def _result(self, rc, res) -> Result:
        try:
            if rc != 0:
                self._raise(rc)
            return Result(res, self._sc)
        finally:
            if res != _ffi.NULL:
                _lib.sr_result_free(res)

    def _scatter_opts(self, merge, partial, max_lag_ms, consistency, keep):
        o = _ffi.new("sr_scatter_opts *")
        keep.append(o)
        o.version = _SCATTER_OPTS_VERSION
        if merge == "auto":
            o.merge = 0
        elif merge == "concat":
            o.merge = 1
        elif isinstance(merge, Mapping):
            o.merge = 2
            o.spec = _merge_spec(merge, keep)
        else:
            raise InterfaceError(f"merge is 'auto', 'concat' or a dict (an explicit merge "
                                 f"spec), not {merge!r}")
        o.partial = 1 if partial else 0
        o.read = self._read_opts(max_lag_ms, consistency, keep)
        return o

    def execute_all(self, sql: str, params: Optional[Sequence[Any]] = None, *,
                    intent: str = "read", merge: str = "auto", partial: bool = False,
                    max_lag_ms: Optional[int] = None,
                    consistency: Optional[str] = None) -> Result:
        """Runs the statement on every shard at once and merges the rows:
        ORDER BY, LIMIT/OFFSET, COUNT/SUM/MIN/MAX/AVG, GROUP BY and DISTINCT
        as one database would (merge="auto"), the shards' rows in shard
        order (merge="concat"), or as an explicit spec says (a dict: ``order``
        [(col, "asc"|"desc"[, "first"|"last"])], ``limit``, ``offset``,
        ``group`` [cols], ``aggs`` ["none"|"count"|"sum"|"min"|"max" per result
        column], ``distinct``; the SQL then goes to every shard unchanged). A shape that cannot be merged correctly raises
        ProgrammingError saying why. When shards fail, OperationalError
        (SR_EPARTIAL) names them; with partial=True the rows of the shards that
        answered come back instead, with ``failed_shards`` set.
        """
        sqlb = _sql(sql)
        keep: list = []
        it = _intent(intent)
        n, vals = _values(params, keep)
        with self._lock:
            s = self._handle()
            o = self._scatter_opts(merge, partial, max_lag_ms, consistency, keep)
            out = self._sc.result
            out[0] = _ffi.NULL
            rc = _lib.sr_exec_all_values(s, it, o, sqlb, n, vals, out)
            if rc == _lib.SR_EPARTIAL and partial and out[0] != _ffi.NULL:
                rc = 0
            return self._result(rc, out[0])

    def explain_all(self, sql: str, *, intent: str = "read", merge: str = "auto") -> str:
        """What execute_all() would do, without running anything: the shards,
        each one's SQL after any rewrite, and the merge plan."""
        sqlb = _sql(sql)
        keep: list = []
        it = _intent(intent)
        with self._lock:
            s = self._handle()
            o = self._scatter_opts(merge, False, None, None, keep)
            size = 4096
            while True:
                buf = _ffi.new("char[]", size)
                rc = _lib.sr_explain_all(s, it, o, sqlb, buf, size)
                if rc < 0:
                    self._raise(rc)
                if rc < size:
                    return _text(buf)
                size = rc + 1

    def stream(self, sql: str, params: Optional[Sequence[Any]] = None, *,
               key: Union[int, str, bytes], intent: str = "auto",
               max_lag_ms: Optional[int] = None, consistency: Optional[str] = None) -> "Stream":
        """A cursor that delivers the rows of one statement as they arrive (memory
        bounded by a small batch); iterate it, and close it (or use ``with``)."""
        sqlb = _sql(sql)
        keep: list = []
        it = _intent(intent)
        with self._lock:
            s = self._handle()
            k = _key(key, keep)
            n, vals = _values(params, keep)
            opts = self._read_opts(max_lag_ms, consistency, keep)
            out = _ffi.new("sr_cursor **")
            rc = _lib.sr_cursor_open(s, k, it, opts, sqlb, n, vals, out)
            if rc != 0:
                self._raise(rc)
            return self._stream(out[0])

    def stream_all(self, sql: str, params: Optional[Sequence[Any]] = None, *,
                   intent: str = "read", merge: str = "auto",
                   max_lag_ms: Optional[int] = None,
                   consistency: Optional[str] = None) -> "Stream":
        """execute_all() as a cursor: every shard streams in parallel, an ORDER BY
        is merged k ways as rows come."""
        sqlb = _sql(sql)
        keep: list = []
        it = _intent(intent)
        n, vals = _values(params, keep)
        with self._lock:
            s = self._handle()
            o = self._scatter_opts(merge, False, max_lag_ms, consistency, keep)
            out = _ffi.new("sr_cursor **")
            rc = _lib.sr_cursor_open_all(s, it, o, sqlb, n, vals, out)
            if rc != 0:
                self._raise(rc)
            return self._stream(out[0])

    def _stream(self, handle) -> "Stream":
        core = _StreamCore(handle)
        self._core.streams.add(core)
        return Stream(self, core)

    # transactions
    def begin(self, key: Union[int, str, bytes, None] = None, *, shard: Optional[int] = None,
              read_only: bool = False) -> None:
        """Begins a transaction on the primary of the key's shard (or of `shard`)."""
        if (key is None) == (shard is None):
            raise InterfaceError("begin() needs exactly one of key= and shard=")
        keep: list = []
        with self._lock:
            s = self._handle()
            if shard is not None:
                if read_only:
                    raise InterfaceError("read_only transactions take a key")
                rc = _lib.sr_begin_shard(s, _index(shard, "shard"))
            else:
                k = _key(key, keep)
                rc = (_lib.sr_begin_read_only if read_only else _lib.sr_begin)(s, k)
            if rc != 0:
                self._raise(rc)

    def commit(self) -> None:
        with self._lock:
            rc = _lib.sr_commit(self._handle())
            if rc != 0:
                self._raise(rc)

    def rollback(self) -> None:
        with self._lock:
            rc = _lib.sr_rollback(self._handle())
            if rc != 0:
                self._raise(rc)

    @property
    def in_transaction(self) -> bool:
        with self._lock:
            return bool(_lib.sr_in_transaction(self._handle()))

    def transaction(self, key: Union[int, str, bytes, None] = None, *,
                    shard: Optional[int] = None, read_only: bool = False) -> "_Transaction":
        """``with session.transaction(key): ...`` commits at the end of the block, or
        rolls back when it raises."""
        return _Transaction(self, key, shard, read_only)


class _Transaction:
    def __init__(self, session, key, shard, read_only):
        self._s, self._key, self._shard, self._ro = session, key, shard, read_only

    def __enter__(self):
        self._s.begin(self._key, shard=self._shard, read_only=self._ro)
        return self._s

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._s.commit()
        elif self._s.in_transaction:
            self._s.rollback()
        return False


_AGGS = {"none": 0, "count": 1, "sum": 2, "min": 3, "max": 4}
_SPEC_KEYS = {"order", "limit", "offset", "group", "aggs", "distinct"}


def _merge_spec(spec: Mapping, keep: list):
    """An sr_merge_spec from a dict (see Session.execute_all)."""
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise InterfaceError(f"unknown merge spec keys: {', '.join(sorted(unknown))} "
                             f"({', '.join(sorted(_SPEC_KEYS))})")
    m = _ffi.new("sr_merge_spec *")
    keep.append(m)
    m.version = _MERGE_SPEC_VERSION
    m.limit = -1
    order = list(spec.get("order") or [])
    if order:
        keys = _ffi.new("sr_order_key[]", len(order))
        keep.append(keys)
        for i, k in enumerate(order):
            if isinstance(k, int):
                k = (k,)
            if not isinstance(k, (tuple, list)) or not 1 <= len(k) <= 3:
                raise InterfaceError(f"order key {k!r}: (column, 'asc'|'desc'[, 'first'|'last'])")
            keys[i].col = _index(k[0], "column")
            direction = k[1] if len(k) > 1 else "asc"
            if direction not in ("asc", "desc"):
                raise InterfaceError(f"order direction {direction!r}: 'asc' or 'desc'")
            keys[i].desc = direction == "desc"
            nulls = k[2] if len(k) > 2 else None
            if nulls not in (None, "first", "last"):
                raise InterfaceError(f"nulls {nulls!r}: 'first' or 'last'")
            keys[i].nulls = {None: 0, "first": 1, "last": 2}[nulls]
        m.norder = len(order)
        m.order = keys
    for name in ("limit", "offset"):
        v = spec.get(name)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _INT64_MAX:
                raise InterfaceError(f"merge spec {name} is an int >= 0, not {v!r}")
            setattr(m, name, v)
    group = list(spec.get("group") or [])
    if group:
        g = _ffi.new("int[]", [_index(c, "column") for c in group])
        keep.append(g)
        m.ngroup = len(group)
        m.group = g
    aggs = list(spec.get("aggs") or [])
    if aggs:
        try:
            a = _ffi.new("sr_agg[]", [_AGGS[x] for x in aggs])
        except (KeyError, TypeError):
            raise InterfaceError(f"aggs are among {', '.join(_AGGS)}, not {aggs!r}") from None
        keep.append(a)
        m.naggs = len(aggs)
        m.aggs = a
    m.distinct = 1 if spec.get("distinct") else 0
    return m


def _sql(sql) -> bytes:
    if not isinstance(sql, str):
        raise InterfaceError(f"SQL is a str, not {type(sql).__name__}")
    return _utf8(sql, "SQL")


_SERVER_SCHEMES = ("postgresql:", "postgres:", "mysql:", "mariadb:")


def _plain_texts(params, keep):
    """Parameters that are all int (not bool), str or None as a C array of text (the
    library's text path, whose prepared statements the driver caches), else None (the
    typed path then sends them, or says what is wrong with them)."""
    if type(params) not in (tuple, list) or not params:
        return None
    ptrs = []
    for v in params:
        t = type(v)
        if v is None:
            ptrs.append(_ffi.NULL)
            continue
        if t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                return None
            b = str(v).encode()
        elif t is str:
            try:
                b = v.encode("utf-8")
            except UnicodeEncodeError:
                return None
            if b"\0" in b:
                return None
        else:
            return None
        buf = _ffi.new("char[]", b)
        keep.append(buf)
        ptrs.append(buf)
    arr = _ffi.new("const char *[]", ptrs)
    keep.append(arr)
    return arr


def _texts(params, keep):
    """Text parameters for sr_exec_shard (None: SQL NULL)."""
    if params is None:
        return []
    if isinstance(params, (str, bytes, bytearray, Mapping)) or not hasattr(params, "__len__"):
        raise InterfaceError("parameters are a sequence (a tuple or list) matching the ? "
                             f"placeholders, not {type(params).__name__}")
    out = []
    for i, v in enumerate(params):
        if v is None:
            out.append(_ffi.NULL)
            continue
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (bytes, bytearray, memoryview)):
            raise InterfaceError(f"parameter {i + 1}: bytes cannot go to shard=; use key=")
        b = _ffi.new("char[]", _utf8(str(v), f"parameter {i + 1}"))
        keep.append(b)
        out.append(b)
    if not out:
        return []
    arr = _ffi.new("const char *[]", out)
    keep.append(arr)
    return arr


class Stream(_Closing):
    """Rows as they arrive (``Session.stream``/``stream_all``): iterate it, or call
    ``fetchone()``; ``description`` is known after the first row is asked for.
    Close it (or use ``with``) to stop early: what still runs is cancelled."""

    def __init__(self, session: Session, core: _StreamCore):
        self._session = session
        self._core = core
        self.description: Optional[tuple] = None
        self._res = None
        self._types = None

    def fetchone(self) -> Optional[tuple]:
        s = self._session
        with s._lock:
            c = self._core.c
            if c is None:
                raise InterfaceError("the stream is closed")
            rc = _lib.sr_cursor_next(c)
            if rc < 0:
                s._raise(rc)
            row = s._sc.row
            res = _lib.sr_cursor_row(c, row)
            # Each shard's rows come in results of their own, and a column's type may be
            # settled only by its first value: the types are read per result.
            if res != _ffi.NULL and res != self._res:
                description, self._types = _columns(res)
                if self.description is None:
                    self.description = description
                self._res = res
            if rc == 0:
                return None
            sc = s._sc
            return tuple([_value(res, row[0], c_, t, sc) for c_, t in enumerate(self._types)])

    def __iter__(self) -> Iterator[tuple]:
        while True:
            r = self.fetchone()
            if r is None:
                return
            yield r

    def close(self) -> None:
        s = self._session
        with s._lock:
            self._core.close()
            s._core.streams.discard(self._core)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
