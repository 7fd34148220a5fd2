"""Throw-away PostgreSQL clusters for the test-suite and the bench scripts.

``ThrowawayCluster`` runs ``initdb`` into a fresh temporary directory, starts a
``postgres`` server on 127.0.0.1 on a free port (durability switched off for
speed), creates a database and tears everything down again on exit::

    with ThrowawayCluster() as pg:
        engine = create_async_engine(pg.dsn_asyncpg)
        ...

PostgreSQL refuses to run as root.  When we *are* root the cluster runs as the
``postgres`` OS user if it exists, otherwise as a system user ``relief-pg-test``
that is created on first use (override with ``RELIEF_TEST_PG_USER``).  The
privilege drop is done by ``subprocess`` itself (``user=``/``group=``), the same
thing ``runuser -u USER --`` would do, but without an intermediate process: the
postmaster is our direct child, so we can reap it and it gets ``SIGQUIT``
(immediate shutdown) via ``PR_SET_PDEATHSIG`` if this process dies without
running its clean-up (``kill -9``, OOM killer).  Normal exits are covered by the
context manager and by an ``atexit`` hook.  Directories left behind by killed
runs are removed the next time a cluster starts.

Environment:

``RELIEF_TEST_POSTGRES_URL``
    Use this existing server instead of starting one.  A uniquely named
    database is created on it (and dropped again on exit); ``restart()`` is
    not available.
``RELIEF_TEST_PG_BINDIR``
    Use exactly this directory for the server binaries (``initdb``,
    ``postgres``).  If it does not contain them, ``find_postgres_bindir()``
    returns ``None`` -- handy to simulate a machine without PostgreSQL.
``RELIEF_TEST_PG_USER``
    OS user the cluster runs as when we are root.

Only the standard library is needed, except for the rare fallback that runs
SQL through asyncpg when no ``psql`` binary is available.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "BINDIR_ENV",
    "EXTERNAL_URL_ENV",
    "PostgresNotFoundError",
    "StreamingReplica",
    "ThrowawayCluster",
    "find_postgres_bindir",
]

BINDIR_ENV = "RELIEF_TEST_PG_BINDIR"
EXTERNAL_URL_ENV = "RELIEF_TEST_POSTGRES_URL"
USER_ENV = "RELIEF_TEST_PG_USER"
FALLBACK_OS_USER = "relief-pg-test"
DIR_PREFIX = "relief-pg-"
SUPERUSER = "postgres"
HOST = "127.0.0.1"

# Durability is irrelevant for a cluster that is deleted after the run.
FAST_SETTINGS: Mapping[str, str] = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

_SERVER_EXES = ("postgres", "initdb")
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_DBNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_PORT_IN_USE = ("could not bind", "address already in use", "could not create any tcp/ip sockets")
_PG_CONN_ENV = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGTARGETSESSIONATTRS",
)


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries could be found."""


# --------------------------------------------------------------------------- discovery


def _is_server_bindir(path: Path) -> bool:
    return all((path / exe).is_file() and os.access(path / exe, os.X_OK) for exe in _SERVER_EXES)


def _version_key(bindir: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,), /usr/pgsql-9.6/bin -> (9, 6)
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))


def find_postgres_bindir() -> Path | None:
    """Directory holding ``initdb`` and ``postgres``, or ``None``.

    Order: ``$RELIEF_TEST_PG_BINDIR`` (exclusively, when set), ``pg_config
    --bindir``, ``/usr/lib/postgresql/*/bin`` and ``/usr/pgsql-*/bin`` newest
    first, ``/usr/local/pgsql/bin``, then ``postgres`` on ``PATH``.
    """
    override = os.environ.get(BINDIR_ENV)
    if override is not None:
        path = Path(override)
        return path if _is_server_bindir(path) else None

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    for root, pattern in (("/usr/lib/postgresql", "*/bin"), ("/usr", "pgsql-*/bin")):
        candidates += sorted(Path(root).glob(pattern), key=_version_key, reverse=True)
    candidates.append(Path("/usr/local/pgsql/bin"))
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)

    for candidate in candidates:
        if _is_server_bindir(candidate):
            return candidate
    return None


# --------------------------------------------------------------------------- process helpers


def _service_user() -> pwd.struct_passwd | None:
    """OS user to run the server as; ``None`` means "as ourselves" (not root)."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get(USER_ENV)
    for name in [wanted] if wanted else ["postgres", FALLBACK_OS_USER]:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    if wanted:
        raise RuntimeError(f"{USER_ENV}={wanted!r}: no such OS user")
    _create_system_user(FALLBACK_OS_USER)
    return pwd.getpwnam(FALLBACK_OS_USER)


def _create_system_user(name: str) -> None:
    nologin = next(
        (p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(p).exists()),
        "/bin/false",
    )
    attempts = [
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", nologin, name],
        ["adduser", "--system", "--group", "--no-create-home", "--home", "/nonexistent", name],
    ]  # fmt: skip
    errors = []
    for argv in attempts:
        if shutil.which(argv[0]) is None:
            continue
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        with contextlib.suppress(KeyError):  # also covers a concurrent run creating it
            pwd.getpwnam(name)
            return
        errors.append(f"{' '.join(argv)}: {res.stderr.strip()}")
    raise RuntimeError(f"could not create OS user {name!r} for PostgreSQL: {errors}")


def _preexec(die_with_parent: bool) -> Callable[[], None] | None:
    """Make the child get SIGQUIT when this process dies (Linux only).

    ``subprocess`` runs ``preexec_fn`` *after* dropping privileges, which
    matters: changing credentials clears the parent-death signal.  The signal
    is tied to the creating *thread*, so it is only armed from the main thread.
    """
    if not die_with_parent or not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGQUIT), 0, 0, 0)
        if os.getppid() != parent:  # parent already gone before prctl
            os._exit(1)

    return arm


def _traversable_by_anyone(path: Path) -> bool:
    try:
        return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PG_CONN_ENV}
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


# --------------------------------------------------------------------------- the cluster


class ThrowawayCluster:
    """A temporary PostgreSQL cluster (or an existing server, see module doc).

    Attributes after ``start()``/``__enter__``: ``port``, ``bindir`` (may be
    ``None`` for an external server without local binaries), ``dbname``,
    ``dsn`` (``postgresql://`` form, for asyncpg/libpq), ``dsn_asyncpg``
    (SQLAlchemy ``postgresql+asyncpg://`` form), ``tmpdir``/``datadir``/
    ``logfile`` (throw-away clusters only), ``startup_seconds``.
    """

    def __init__(
        self,
        *,
        dbname: str = "relief_test",
        bindir: Path | str | None = None,
        settings: Mapping[str, str] | None = None,
        honour_env: bool = True,
        startup_timeout: float = 60.0,
        die_with_parent: bool = True,
    ) -> None:
        self._check_dbname(dbname)
        self.dbname = dbname
        self.external_url = (os.environ.get(EXTERNAL_URL_ENV) or None) if honour_env else None
        self.bindir: Path | None = Path(bindir) if bindir is not None else None
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.host = HOST
        self.port = 0
        self.startup_seconds = 0.0
        self.tmpdir: Path | None = None
        self.datadir: Path | None = None
        self.logfile: Path | None = None
        self._user: pwd.struct_passwd | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._created_dbs: list[str] = []
        self._started = False
        self._closed = False

    # ----------------------------------------------------------------- public API

    @property
    def external(self) -> bool:
        return self.external_url is not None

    @property
    def dsn(self) -> str:
        return self.url(self.dbname, driver=None)

    @property
    def dsn_asyncpg(self) -> str:
        return self.url(self.dbname)

    def url(self, dbname: str, driver: str | None = "asyncpg") -> str:
        """URL of ``dbname`` on this server (SQLAlchemy form unless driver=None)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        if self.external_url is not None:
            parts = urlsplit(self.external_url)
            return urlunsplit((scheme, parts.netloc, f"/{dbname}", parts.query, ""))
        return f"{scheme}://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def __enter__(self) -> ThrowawayCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> ThrowawayCluster:
        """Set the cluster up (first call) or start a stopped server again."""
        if self._closed:
            raise RuntimeError("cluster already closed")
        if self._started:
            if self._proc is None and not self.external:
                self._start_server(fixed_port=True)
            return self
        self._started = True
        atexit.register(self.close)
        try:
            if self.external:
                self._setup_external()
            else:
                self._setup_local()
        except BaseException:
            self.close()
            raise
        return self

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its ``postgresql+asyncpg://`` URL."""
        self._check_dbname(name)
        self._exec_sql(f'CREATE DATABASE "{name}"')
        if self.external:
            self._created_dbs.append(name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._check_dbname(name)
        self._exec_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(ValueError):
            self._created_dbs.remove(name)

    def pg_dump(self, dbname: str | None = None, *extra_args: str) -> bytes:
        """Plain-SQL dump of ``dbname`` (default: the main database)."""
        pg_dump = self._client_binary("pg_dump")
        if pg_dump is None:
            raise PostgresNotFoundError("pg_dump not found")
        res = subprocess.run(
            [pg_dump, "--no-password", *extra_args, "-d", self.url(dbname or self.dbname, None)],
            capture_output=True,
            env=_client_env(),
            timeout=300,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"pg_dump failed: {res.stderr.decode(errors='replace').strip()}")
        return res.stdout

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``/``fast``/``immediate``, as ``pg_ctl stop -m``)."""
        if self.external:
            raise RuntimeError("cannot stop an external server")
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(_STOP_SIGNALS[mode])
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # backends notice the postmaster's death (they run in their own sessions)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server on the same data directory and port.

        ``mode="immediate"`` simulates a crash (the restart runs crash recovery).
        """
        self.stop(mode)
        self._start_server(fixed_port=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Stop the server (immediately) and delete everything.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            if self.external:
                for name in reversed(self._created_dbs):
                    with contextlib.suppress(Exception):
                        self._exec_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                self.stop("immediate")
        finally:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        if self.logfile is None:
            return ""
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        where = "external" if self.external else f"pid={self.pid} dir={self.tmpdir}"
        return f"<ThrowawayCluster {self.host}:{self.port}/{self.dbname} {where}>"

    # ----------------------------------------------------------------- setup

    def _setup_external(self) -> None:
        assert self.external_url is not None
        parts = urlsplit(self.external_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 5432
        self.bindir = self.bindir or find_postgres_bindir()
        t0 = time.monotonic()
        unique = f"{self.dbname}_{os.getpid()}_{secrets.token_hex(3)}"
        self.create_database(unique)
        self.dbname = unique
        self.startup_seconds = time.monotonic() - t0

    def _setup_local(self) -> None:
        t0 = time.monotonic()
        self.bindir = self.bindir or find_postgres_bindir()
        if self.bindir is None:
            raise PostgresNotFoundError(
                "no PostgreSQL server binaries (initdb, postgres) found; install Debian's "
                f"'postgresql' package, set {BINDIR_ENV}, or point {EXTERNAL_URL_ENV} at a server"
            )
        self._user = _service_user()
        base = Path(tempfile.gettempdir())
        if self._user is not None and not _traversable_by_anyone(base):
            base = Path("/tmp")
        _remove_stale_dirs(base)
        self.tmpdir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base))
        (self.tmpdir / "owner.pid").write_text(f"{os.getpid()}\n")
        if self._user is not None:
            os.chown(self.tmpdir, self._user.pw_uid, self._user.pw_gid)
        self.datadir = self.tmpdir / "data"
        self.logfile = self.tmpdir / "postgres.log"
        self._initdb()
        self._start_server(fixed_port=False)
        self._exec_sql(f'CREATE DATABASE "{self.dbname}"')
        self.startup_seconds = time.monotonic() - t0

    def _server_env(self) -> dict[str, str]:
        assert self.tmpdir is not None
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.tmpdir),
            "LANG": "C",
            "TZ": os.environ.get("TZ", "UTC"),
        }

    def _spawn_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "cwd": self.tmpdir,
            "env": self._server_env(),
            "stdin": subprocess.DEVNULL,
            "preexec_fn": _preexec(self.die_with_parent),
        }
        if self._user is not None:
            kwargs.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        return kwargs

    def _initdb(self) -> None:
        assert self.bindir is not None
        assert self.datadir is not None
        outputs = []
        for locale in ("C.UTF-8", "C"):
            argv = [
                str(self.bindir / "initdb"),
                "-D", str(self.datadir),
                "--auth=trust",
                "-U", SUPERUSER,
                "-E", "UTF8",
                f"--locale={locale}",
                "-N",  # no fsync: the cluster is thrown away
            ]  # fmt: skip
            res = subprocess.run(
                argv, capture_output=True, timeout=300, check=False, **self._spawn_kwargs()
            )
            if res.returncode == 0:
                return
            outputs.append(f"[{locale}] " + (res.stdout + res.stderr).decode(errors="replace"))
            shutil.rmtree(self.datadir, ignore_errors=True)
        raise RuntimeError("initdb failed:\n" + "\n".join(outputs))

    def _start_server(self, *, fixed_port: bool) -> None:
        assert self.bindir is not None
        assert self.datadir is not None
        assert self.logfile is not None
        t0 = time.monotonic()
        attempts = 1 if fixed_port else 5
        for attempt in range(attempts):
            if not fixed_port:
                self.port = _free_port()
            argv = [
                str(self.bindir / "postgres"),
                "-D", str(self.datadir),
                "-p", str(self.port),
                "-k", str(self.tmpdir),
            ]  # fmt: skip
            for key, value in self.settings.items():
                argv += ["-c", f"{key}={value}"]
            with open(self.logfile, "ab") as log:
                self._proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._spawn_kwargs(),
                )
            if self._wait_ready(deadline=t0 + self.startup_timeout):
                return
            log_text = self.log_tail().lower()
            self.stop("immediate")
            if not any(m in log_text for m in _PORT_IN_USE) or attempt == attempts - 1:
                break
        raise RuntimeError(
            f"PostgreSQL did not start on {self.host}:{self.port}; log:\n{self.log_tail()}"
        )

    def _wait_ready(self, deadline: float) -> bool:
        assert self._proc is not None
        assert self.datadir is not None
        pidfile = self.datadir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                lines = pidfile.read_text().splitlines()
            except OSError:
                lines = []
            # line 1: pid, line 8: status ("ready" once it accepts connections)
            ready = len(lines) >= 8 and lines[7].strip() == "ready"
            if ready and lines[0].strip() == str(self._proc.pid):
                with contextlib.suppress(OSError):
                    socket.create_connection((HOST, self.port), timeout=1).close()
                    return True
            time.sleep(0.02)
        return False

    # ----------------------------------------------------------------- SQL

    def _client_binary(self, name: str) -> str | None:
        if self.bindir is not None and (self.bindir / name).is_file():
            return str(self.bindir / name)
        return shutil.which(name)

    def _maintenance_db(self) -> str:
        if self.external_url is not None:
            return urlsplit(self.external_url).path.lstrip("/") or "postgres"
        return "postgres"

    def _exec_sql(self, sql: str) -> None:
        """Run one statement in the maintenance database (no transaction block)."""
        url = self.url(self._maintenance_db(), None)
        psql = self._client_binary("psql")
        if psql is None:
            _run_sql_with_asyncpg(url, sql)
            return
        res = subprocess.run(
            [psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
            capture_output=True,
            text=True,
            env=_client_env(),
            timeout=120,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"{sql!r} failed: {res.stderr.strip()}")

    @staticmethod
    def _check_dbname(name: str) -> None:
        if not _DBNAME_RE.fullmatch(name):
            raise ValueError(f"unsupported database name {name!r} (use [A-Za-z_][A-Za-z0-9_]*)")


def _run_sql_with_asyncpg(url: str, sql: str) -> None:
    """Fallback without psql; runs in its own thread so it works inside an event loop."""
    import asyncpg  # type: ignore[import-untyped]

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, name="pgcluster-sql")
    worker.start()
    worker.join()
    if errors:
        raise RuntimeError(f"{sql!r} failed: {errors[0]}") from errors[0]


def _remove_stale_dirs(base: Path) -> None:
    """Delete cluster directories of runs that were killed before cleaning up.

    Only directories carrying our ``owner.pid`` marker whose owner *and*
    postmaster are both gone are touched; nothing is ever killed here.
    """
    for path in base.glob(f"{DIR_PREFIX}*"):
        owner = _read_pid(path / "owner.pid")
        if owner is None or _pid_alive(owner):
            continue
        postmaster = _read_pid(path / "data" / "postmaster.pid")
        if postmaster is not None and _pid_alive(postmaster):
            continue
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- streaming replica


class StreamingReplica(ThrowawayCluster):
    """A hot standby of a local ``ThrowawayCluster``, fed by streaming replication::

        with ThrowawayCluster() as primary, StreamingReplica(primary) as replica:
            replica.wait_streaming()
            engine = create_async_engine(replica.dsn_asyncpg)   # read-only, same databases

    ``pg_basebackup -R`` copies the primary's data directory into a fresh temporary one
    (writing ``standby.signal`` and ``primary_conninfo``); the standby then runs on its own
    loopback port, as the same OS user, with the same throw-away durability settings. It
    serves the primary's databases under the same names. ``stop()``/``start()``/``restart()``
    and ``close()`` behave as for the primary; ``pause_replay()``/``resume_replay()`` hold and
    release WAL replay (``pg_wal_replay_pause``), so its data falls behind on purpose.
    """

    def __init__(self, primary: ThrowawayCluster, *, startup_timeout: float = 60.0) -> None:
        if primary.external:
            raise RuntimeError("a streaming replica needs a local primary (not an external URL)")
        super().__init__(
            dbname=primary.dbname,
            bindir=primary.bindir,
            settings={**primary.settings, "hot_standby": "on"},
            honour_env=False,
            startup_timeout=startup_timeout,
            die_with_parent=primary.die_with_parent,
        )
        self.primary = primary

    def _setup_local(self) -> None:
        t0 = time.monotonic()
        self.bindir = self.bindir or find_postgres_bindir()
        if self.bindir is None or not (self.bindir / "pg_basebackup").is_file():
            raise PostgresNotFoundError("pg_basebackup not found beside the server binaries")
        self._user = _service_user()
        base = Path(tempfile.gettempdir())
        if self._user is not None and not _traversable_by_anyone(base):
            base = Path("/tmp")
        self.tmpdir = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=base))
        (self.tmpdir / "owner.pid").write_text(f"{os.getpid()}\n")
        if self._user is not None:
            os.chown(self.tmpdir, self._user.pw_uid, self._user.pw_gid)
        self.datadir = self.tmpdir / "data"
        self.logfile = self.tmpdir / "postgres.log"
        argv = [
            str(self.bindir / "pg_basebackup"),
            "-D", str(self.datadir),
            "-d", self.primary.url("postgres", None),
            "-R",  # standby.signal + primary_conninfo: it starts as a streaming standby
            "-X", "stream",
            "-c", "fast",  # an immediate checkpoint on the primary, not a spread one
            "--no-sync",
        ]  # fmt: skip
        res = subprocess.run(
            argv, capture_output=True, timeout=300, check=False, **self._spawn_kwargs()
        )
        if res.returncode != 0:
            raise RuntimeError("pg_basebackup failed:\n" + res.stderr.decode(errors="replace"))
        self._start_server(fixed_port=False)
        self.startup_seconds = time.monotonic() - t0

    def query(self, sql: str, *, on_primary: bool = False) -> str:
        """One statement's result as psql's unaligned text (the standby's, or the primary's)."""
        cluster = self.primary if on_primary else self
        return _psql_value(cluster, sql)

    def wait_streaming(self, timeout: float = 60.0) -> None:
        """Until the standby is in recovery and the primary shows its WAL sender streaming."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                in_recovery = self.query("SELECT pg_is_in_recovery()") == "t"
                streaming = self.query(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                    on_primary=True,
                )
                if in_recovery and streaming not in ("", "0"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the replica is not streaming; log:\n{self.log_tail()}")

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        target = self.query("SELECT pg_current_wal_insert_lsn()", on_primary=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            caught_up = self.query(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
            if caught_up == "t":
                return
            time.sleep(0.02)
        raise RuntimeError(f"the replica did not replay up to {target}")

    def pause_replay(self) -> None:
        self.query("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")


def _psql_value(cluster: ThrowawayCluster, sql: str) -> str:
    psql = cluster._client_binary("psql")
    if psql is None:
        raise PostgresNotFoundError("psql not found")
    res = subprocess.run(
        [psql, "-X", "-q", "-A", "-t", "--no-password", "-v", "ON_ERROR_STOP=1",
         "-d", cluster.url(cluster.dbname, None), "-c", sql],
        capture_output=True,
        text=True,
        env=_client_env(),
        timeout=60,
        check=False,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"{sql!r} failed: {res.stderr.strip()}")
    return res.stdout.strip()
