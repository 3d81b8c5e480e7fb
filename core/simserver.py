"""What the shipped simulators (insurer, SMS gateway, credit-score platform) share: a threaded
HTTP server that can be told to hang, a JSON answer, and running in the foreground until
SIGTERM or SIGINT.

No Django here, so each simulator also runs as a plain ``python -m`` program.
"""

import json
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

MAX_BODY = 1 << 20
DEFAULT_HANG_SECONDS = 30.0

Log = Callable[[str], None]


class HangingServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` whose handlers can be held (a stuck service) and released."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        hang_seconds: float = DEFAULT_HANG_SECONDS,
        log: Log = print,
    ) -> None:
        self.hang_seconds = hang_seconds
        self.hanging = 0
        self._gate = threading.Event()
        self._gate_lock = threading.Lock()
        self._log = log
        self._log_lock = threading.Lock()
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def log(self, line: str) -> None:
        with self._log_lock:
            self._log(line)

    def hang(self, seconds: float) -> None:
        """Hold the calling request ``seconds``, or until :meth:`release`."""
        with self._gate_lock:
            gate = self._gate
            self.hanging += 1
        try:
            gate.wait(seconds)
        finally:
            with self._gate_lock:
                self.hanging -= 1

    def release(self) -> None:
        """Let every request held now go on; requests held later wait again."""
        with self._gate_lock:
            gate, self._gate = self._gate, threading.Event()
        gate.set()


class JsonHandler(BaseHTTPRequestHandler):
    """Reads JSON bodies and writes JSON (or HTML) answers; no access log."""

    def log_message(self, format: str, *args: Any) -> None:
        """The access log is replaced by the simulator's own line per call."""

    def read_json(self) -> object:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise ValueError("a JSON body with Content-Length is required")
        return json.loads(self.rfile.read(length))

    def send_json(self, status: int, payload: object) -> bool:
        body = json.dumps(payload, ensure_ascii=False).encode()
        return self.send_body(status, body, "application/json; charset=utf-8")

    def send_body(self, status: int, body: bytes, content_type: str) -> bool:
        """Whether the answer went out (the caller may have given up waiting)."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True


def control_hang(body: dict[str, Any]) -> tuple[float, bool]:
    """``hang_seconds`` and ``release`` of a ``/sim/control`` body, checked."""
    hang = float(body.get("hang_seconds", DEFAULT_HANG_SECONDS))
    if not 0 <= hang <= 3600:
        raise ValueError("hang_seconds must be between 0 and 3600")
    release = body.get("release", False)
    if not isinstance(release, bool):
        raise ValueError("release must be true or false")
    return hang, release


class _Stop(BaseException):
    pass


def serve(server: ThreadingHTTPServer) -> None:
    """Serve in the foreground until SIGTERM or SIGINT, then close the socket."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever(poll_interval=0.2)
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
