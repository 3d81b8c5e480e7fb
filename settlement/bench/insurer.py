"""The insurer simulator for the benchmarks, in a process of its own.

In production the insurer is another system: its work is not the server's. Run in a thread of
the measured process, the simulator would share the interpreter's lock with the settle being
timed, and the garbage it makes (a copy of its state per settle) would be collected in the
middle of the timed code.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

STARTUP_SECONDS = 20


@contextmanager
def insurer_process(folder: Path) -> Iterator[str]:
    """Start the simulator (state and log in ``folder``) on a free port; its URL, until the
    block ends and it is stopped."""
    log = folder / "insurer.log"
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "settlement.insurer.simulator",
                "--port",
                "0",
                "--state",
                str(folder / "insurer.json"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )
    try:
        yield _url(process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _url(process: subprocess.Popen[bytes], log: Path) -> str:
    """The URL the simulator says it listens at, in the first line it prints."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        first = log.read_text().partition("\n")
        if first[1]:  # a whole line
            words = first[0].split()
            if len(words) > 3 and words[3].startswith("http://"):
                return words[3]
            raise CommandError(f"the insurer simulator did not start: {first[0]}")
        if process.poll() is not None:
            raise CommandError(f"the insurer simulator stopped: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise CommandError(f"the insurer simulator did not start in {STARTUP_SECONDS} s")
