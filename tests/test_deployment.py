"""The product as an operations team runs it: gunicorn under production settings.

Static files (the admin's, the API docs') come from the web process itself (WhiteNoise, after
``collectstatic``) and no page refers to anything outside; ``/healthz`` answers 503 when the
database or the broker is gone.
"""

import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS-ending proxy adds


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{db['USER']}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def production_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FIELD_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        FIELD_ENCRYPTION_KEY=secrets.token_urlsafe(32),
        DJANGO_VAR_DIR=str(var_dir),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url(),
    )
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "1"]
            + ["--bind", f"127.0.0.1:{self.port}"],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise AssertionError(f"gunicorn exited: {output}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not start listening within 30 s")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})  # noqa: S310
        opener = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=BASE_DIR,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    return tmp_path


@pytest.fixture
def server(var_dir: Path) -> Iterator[Server]:
    running = Server(production_env(var_dir))
    yield running
    running.stop()


def local_references(html: str) -> list[str]:
    """Every src/href of the page; fails on any that leaves the web process."""
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    outside = [ref for ref in references if re.match(r"^(?:[a-z]+:)?//", ref, re.IGNORECASE)]
    assert not outside, f"the page loads from outside: {outside}"
    return references


@pytest.mark.django_db
def test_static_files_and_api_docs_are_served_by_the_web_process(server):
    status, headers, css = server.get("/static/admin/css/base.css", HTTPS)
    assert status == 200 and b"body" in css
    assert headers["Content-Type"].startswith("text/css")
    assert "max-age=31536000" in headers["Strict-Transport-Security"]
    status, headers, _ = server.get("/static/admin/css/base.css")  # plain HTTP
    assert status == 301 and headers["Location"].startswith("https://")

    for page in ("/admin/login/", "/api/docs/"):
        status, headers, body = server.get(page, HTTPS)
        assert status == 200, page
        assert "max-age=31536000" in headers["Strict-Transport-Security"]
        assets = [ref for ref in local_references(body.decode()) if ref.startswith("/static/")]
        assert assets, f"{page} names no static file"
        for asset in assets:
            assert server.get(asset, HTTPS)[0] == 200, asset


@pytest.mark.django_db
def test_plain_http_is_redirected_except_the_health_check(server):
    status, headers, _ = server.get("/login/")
    assert status == 301
    assert headers["Location"].startswith("https://")
    status, _, body = server.get("/healthz")
    assert status == 200
    assert body == b'{"status": "ok", "database": "ok", "broker": "ok"}'


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "broken", "down"),
    [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/gone", "database"),
        ("CELERY_BROKER_URL", "redis://127.0.0.1:1/0", "broker"),
    ],
)
def test_healthz_answers_503_when_the_database_or_the_broker_is_down(
    var_dir, setting, broken, down
):
    server = Server(production_env(var_dir, **{setting: broken}))
    try:
        status, _, body = server.get("/healthz")
    finally:
        server.stop()
    assert status == 503
    assert f'"{down}": "unavailable"'.encode() in body
    assert b'"status": "unavailable"' in body
