"""Several hosts share only PostgreSQL and the broker: a statement uploaded through a web host
is reconciled by a worker on another host, and no host keeps the file on its disk.

Each host is a Linux network namespace joined to this one by a veth pair: the web host runs
``gunicorn config.wsgi``, the worker host ``celery -A config worker``, both with the production
settings, a ``DJANGO_VAR_DIR`` of their own and the test database and the broker reached over
the veth address. PostgreSQL and Redis listen on 127.0.0.1 only, so a small TCP forwarder in
this process listens on each veth address and forwards to them. Each host's ``DJANGO_VAR_DIR``
is a file system of its own (a tmpfs mounted in the host's own mount namespace): what one host
writes there, the other cannot read, as on two machines.

Namespaces need root (and a kernel and container that allow them): elsewhere the test skips,
saying why; with ``REQUIRE_POSTGRES=1`` (CI) it fails instead.
"""

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings
from django.db import connection

from accounts.services.staff import staff_create
from settlement.reconciliation.models import ReconBatch, ReconFileChunk
from tests.factories import home_institution, statement_csv

ROOT = Path(__file__).resolve().parents[1]
WEB_PORT = 8000  # inside the web host's own namespace: nothing else listens there
DEADLINE = 120.0  # seconds: only so that a broken run ends; no assertion is about time


def unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (REQUIRE_POSTGRES=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)  # noqa: S603


class Forwarder:
    """Listen on ``host`` (a free port) and forward each connection to ``target``."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server((host, 0))
        self.address = (host, self.server.getsockname()[1])
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        self.server.close()
        with self.lock:
            for sock in self.open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class Hosts:
    """Two namespaces ("hosts"), each with a veth pair to this one; everything it makes is
    named after one run, so that two runs do not collide, and undone by :meth:`close`."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10_000:04d}{secrets.token_hex(2)}"
        self.names: dict[str, str] = {}
        self.addresses: dict[str, tuple[str, str]] = {}  # host: (this side, its side)
        subnet = f"10.{secrets.randbelow(190) + 64}.{secrets.randbelow(256)}"
        for index, host in enumerate(("web", "worker")):
            self.names[host] = f"lh{tag}{'ab'[index]}"
            self.addresses[host] = (f"{subnet}.{index * 4 + 1}", f"{subnet}.{index * 4 + 2}")
        self.made: list[str] = []

    def make(self) -> None:
        for host, name in self.names.items():
            outside, inside = self.addresses[host]
            added = run("ip", "netns", "add", name)
            if added.returncode != 0:
                unavailable(f"network namespaces are not permitted here: {added.stderr.strip()}")
            self.made.append(name)
            for command in (
                ("ip", "link", "add", f"{name}0", "type", "veth", "peer", "name", f"{name}1"),
                ("ip", "link", "set", f"{name}1", "netns", name),
                ("ip", "addr", "add", f"{outside}/30", "dev", f"{name}0"),
                ("ip", "link", "set", f"{name}0", "up"),
                ("ip", "-n", name, "addr", "add", f"{inside}/30", "dev", f"{name}1"),
                ("ip", "-n", name, "link", "set", f"{name}1", "up"),
                ("ip", "-n", name, "link", "set", "lo", "up"),
            ):
                done = run(*command)
                if done.returncode != 0:
                    unavailable(f"cannot wire a namespace ({' '.join(command)}): {done.stderr}")

    def close(self) -> None:
        for name in self.made:
            run("ip", "netns", "delete", name)  # takes its end of the veth pair, and so both
            run("ip", "link", "delete", f"{name}0")  # in case the pair outlived it


class Process:
    """A command run in a host: its ``DJANGO_VAR_DIR`` mounted as a file system of its own."""

    def __init__(
        self, namespace: str, var_dir: Path, command: list[str], env: dict[str, str], log: Path
    ) -> None:
        self.log = log
        # `ip netns exec` gives the command a mount namespace of its own (a slave of this
        # one): the tmpfs is seen by this host alone.
        script = 'mount -t tmpfs -o size=64m host-var "$0" && exec "$@"'
        with log.open("wb") as out:
            self.popen = subprocess.Popen(  # noqa: S603
                ["ip", "netns", "exec", namespace, "sh", "-c", script, str(var_dir), *command],  # noqa: S607
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped whole
            )
        self.var_dir = var_dir

    def seen_var_dir(self) -> Path:
        """The host's DJANGO_VAR_DIR as the host itself sees it."""
        return Path(f"/proc/{self.popen.pid}/root") / self.var_dir.relative_to("/")

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            pytest.fail(f"{self.log.name} exited {self.popen.returncode}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        with contextlib.suppress(ProcessLookupError):  # children left behind by the leader
            os.killpg(self.popen.pid, signal.SIGKILL)


def files_holding(folder: Path, marker: bytes) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and marker in path.read_bytes():
            found.append(path)
    return found


def multipart(fields: dict[str, str], name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for key, value in fields.items():
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
        ).encode()
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    body += content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class WebHost:
    """HTTP to the web host, over the veth pair."""

    def __init__(self, address: str, token: str) -> None:
        self.address = address
        self.token = token

    def request(self, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
        conn = http.client.HTTPConnection(self.address, WEB_PORT, timeout=30)
        try:
            conn.request(
                method,
                path,
                body=body or None,
                # As from the TLS-ending reverse proxy in front of every web host.
                headers={
                    "Authorization": f"Token {self.token}",
                    "X-Forwarded-Proto": "https",
                    **headers,
                },
            )
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
        status, data = self.request(method, path, body, **headers)
        return status, json.loads(data)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if sys.platform != "linux" or os.geteuid() != 0:
        unavailable("network namespaces need Linux and root")
    if shutil.which("ip") is None:
        unavailable("network namespaces need iproute2's `ip`")
    made = Hosts()
    try:
        made.make()
        yield made
    finally:
        made.close()


def wait_for(condition: Any, what: str, *processes: Process) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for process in processes:
            process.check_alive()
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}")


def answers(web: WebHost) -> bool:
    """Whether the web host answers HTTP at all yet."""
    try:
        web.request("GET", "/api/schema/")
    except OSError:
        return False
    return True


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_uploaded_on_one_host_is_reconciled_by_a_worker_on_another(
    hosts, draws, tmp_path
):
    broker = urlsplit(settings.CELERY_BROKER_URL)
    if broker.scheme != "redis":
        unavailable("needs Redis as the broker: set CELERY_BROKER_URL=redis://...")
    partner, (first, second, third) = draws
    _, token = staff_create(
        actor="test", institution=home_institution(), username="finance-hosts", role="finance"
    )
    run_tag = secrets.token_hex(4).upper()
    content = statement_csv(
        [
            (f"HOSTS{run_tag}-1", "100.00", first),  # matched
            (f"HOSTS{run_tag}-2", "200.01", second),  # amount mismatch
            (f"HOSTS{run_tag}-3", "50.00", "DRNOSUCHTHING"),  # unknown reference
            (f"HOSTS{run_tag}-4", "100.00", first),  # paid twice: duplicate
        ]
    )
    marker = f"HOSTS{run_tag}".encode()

    db = connection.settings_dict
    forwarders: list[Forwarder] = []
    processes: list[Process] = []
    try:
        env_of: dict[str, dict[str, str]] = {}
        for host in ("web", "worker"):
            outside, inside = hosts.addresses[host]
            database = Forwarder(outside, (db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
            redis = Forwarder(outside, (broker.hostname or "127.0.0.1", broker.port or 6379))
            forwarders += [database, redis]
            user = quote(db["USER"] or "postgres", safe="")
            password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
            env_of[host] = {
                **{key: value for key, value in os.environ.items() if not key.startswith("DJANGO")},
                "DJANGO_SETTINGS_MODULE": "config.settings.production",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
                "FIELD_ENCRYPTION_KEY": secrets.token_urlsafe(32),
                "DJANGO_ALLOWED_HOSTS": inside,
                "DJANGO_VAR_DIR": str(tmp_path / f"{host}-var"),
                "DATABASE_URL": (
                    f"postgres://{user}{password}@{outside}:{database.address[1]}/{db['NAME']}"
                ),
                "CELERY_BROKER_URL": f"redis://{outside}:{redis.address[1]}{broker.path}",
            }
            (tmp_path / f"{host}-var").mkdir()

        web = Process(
            hosts.names["web"],
            tmp_path / "web-var",
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "2"]
            + ["--bind", f"{hosts.addresses['web'][1]}:{WEB_PORT}", "--access-logfile", "-"],
            env_of["web"],
            tmp_path / "web.log",
        )
        processes.append(web)
        worker = Process(
            hosts.names["worker"],
            tmp_path / "worker-var",
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "1"]
            + ["--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            env_of["worker"],
            tmp_path / "worker.log",
        )
        processes.append(worker)

        # Two hosts' disks: what the web host writes in its VAR_DIR, the worker host cannot see.
        wait_for(lambda: web.seen_var_dir().is_mount(), "the web host's VAR_DIR", web)
        wait_for(lambda: worker.seen_var_dir().is_mount(), "the worker host's VAR_DIR", worker)
        (web.seen_var_dir() / "only-here").write_text("web host")
        seen_by_worker = worker.seen_var_dir().parent / "web-var" / "only-here"
        assert not seen_by_worker.exists()

        site = WebHost(hosts.addresses["web"][1], token)
        wait_for(lambda: answers(site), "the web host to answer", web)
        body, content_type = multipart({"bank": str(partner.pk)}, "statement.csv", content)
        status, answer = site.json(
            "POST",
            "/api/v1/reconciliation/bank-statements/",
            body,
            **{"Content-Type": content_type, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert status == 202, answer
        batch_id = answer["batch"]["id"]
        path = f"/api/v1/reconciliation/batches/{batch_id}/"

        def finished() -> Any:
            status, batch = site.json("GET", path)
            assert status == 200, batch
            return batch if batch["status"] in ("done", "failed") else None

        batch = wait_for(finished, "the worker host to run the batch", web, worker)
        assert batch["status"] == "done", ReconBatch.objects.get(pk=batch_id).error
        assert batch["progress"] == {"done": 4, "total": 4}
        assert batch["counts"] == {
            "matched": 1,
            "covered": 0,
            "amount_mismatch": 1,
            "unknown_reference": 1,
            "duplicate": 1,
            "missing": 1,
            "problem": 0,
        }
        assert {(e["kind"], e["reference"]) for e in batch["exceptions"]} == {
            ("amount_mismatch", second),
            ("unknown_reference", "DRNOSUCHTHING"),
            ("duplicate", first),
            ("missing", third),
        }
        # The matched line has no row of its own: the web host reads it back from the file.
        status, exported = site.request("GET", f"{path}export/")
        assert status == 200
        assert f"matched,1,{first},HOSTS{run_tag}-1,100.00".encode() in exported

        assert "run_recon_batch" in worker.log.read_text()  # this host ran it
        assert ReconFileChunk.objects.filter(batch_id=batch_id).exists()
        # Nothing of the statement is on either host's disk.
        assert files_holding(web.seen_var_dir(), marker) == []
        assert files_holding(worker.seen_var_dir(), marker) == []
        assert [p.name for p in web.seen_var_dir().rglob("*")] == ["only-here"]
    finally:
        for process in processes:
            process.stop()
        for forwarder in forwarders:
            forwarder.close()
