"""A throwaway PostgreSQL server for the tests: a new cluster in a temporary folder, on 127.0.0.1 only.

The server refuses to run as root: as root, every server command runs as the
unprivileged `postgres` user (runuser). Under CI (CI=true) a missing PostgreSQL is
a failure, elsewhere a skip that says what to install.
"""
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

SERVER_SETTINGS = ("-c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                   # A throwaway cluster: surviving a power cut is not wanted, speed is (commits
                   # stay synchronous: a test that stops the server at once keeps what was committed).
                   "-c fsync=off -c full_page_writes=off")


def find_bindir():
    """Return the folder of PostgreSQL's server programs (Debian keeps them off PATH), or None."""
    def version(folder):
        found = re.search(r"/(\d+)/bin$", folder)
        return int(found.group(1)) if found else 0

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if os.path.exists(os.path.join(folder, "initdb")):
            return folder
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def unavailable(reason):
    """Skip a test that needs PostgreSQL, or fail it under CI, where it must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is needed under CI: {reason}")
    pytest.skip(f"PostgreSQL tests need a PostgreSQL server: {reason} (apt install postgresql)")


def free_port():
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One cluster: initdb, start, stop (restartable, as a server that goes away and comes back), remove."""

    def __init__(self, bindir):
        self.bindir = bindir
        self.folder = tempfile.mkdtemp(prefix="valence-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("running as root and there is no 'postgres' user to run the server as")
            self.user = "postgres"
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync")

    def run(self, program, *arguments):
        """Run one of the server programs, as the postgres user when this process is root."""
        command = [os.path.join(self.bindir, program), *arguments]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")

    def start(self):
        """Start the server and wait until it accepts connections."""
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.folder, "log"), "-w", "-t", "60",
                 "-o", f"-p {self.port} {SERVER_SETTINGS}", "start")

    def stop(self):
        """Stop the server at once, as a crash would (connections are cut; nothing to keep)."""
        self.run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def url(self, database="postgres"):
        """Return the URL of a database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        """Create an empty database; return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self):
        """Stop the server if it runs and delete its folder."""
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server():
    """Return a started throwaway server, or skip (fail under CI) when PostgreSQL is missing."""
    bindir = find_bindir()
    if bindir is None:
        unavailable("initdb was not found")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -r dependencies.txt)")
    server = PostgresServer(bindir)
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    return server
