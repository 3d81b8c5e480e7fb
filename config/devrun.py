"""``make run``: the whole product on embedded defaults, in the foreground.

Migrates the database (SQLite under ``var/`` unless ``DATABASE_URL`` is set), loads the demo
data, then starts the insurer simulator, the web server and a Celery worker with beat (on the
embedded filesystem broker unless ``CELERY_BROKER_URL`` is set). Prints what runs where;
Ctrl-C stops all of it.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
WEB_ADDRESS = os.environ.get("WEB_ADDRESS", "127.0.0.1:8000")
# The shipped insurer simulator answers at the default INSURER_URL; stop it to see an outage.
SIMULATOR_PORT = "8765"
SIMULATOR_STATE = str(BASE_DIR / "var" / "insurer-sim.json")


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    for step in (["migrate", "--noinput"], ["seed_demo"]):
        if subprocess.run(manage + step, cwd=BASE_DIR, check=False).returncode:  # noqa: S603
            print(f"`manage.py {' '.join(step)}` failed; nothing was started.", file=sys.stderr)
            return 1

    commands = {
        "insurer": manage
        + ["run_insurer_simulator", "--port", SIMULATOR_PORT, "--state", SIMULATOR_STATE],
        "web": manage + ["runserver", WEB_ADDRESS],
        "worker": [sys.executable, "-m", "celery", "-A", "config", "worker", "-B"]
        + ["--loglevel", "info", "--concurrency", "2"],
    }
    processes = {
        name: subprocess.Popen(command, cwd=BASE_DIR, start_new_session=True)  # noqa: S603
        for name, command in commands.items()
    }
    print(banner(), flush=True)
    # A plain `kill` or a closed terminal stops the children too, as Ctrl-C does.
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, lambda *_: sys.exit(0))
    try:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; stopping.", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
        return 0
    finally:
        stop(processes.values())


def stop(processes: Iterable["subprocess.Popen[bytes]"]) -> None:
    running = [p for p in processes if p.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def banner() -> str:
    import django

    django.setup()
    from django.conf import settings

    database = settings.DATABASES["default"]
    where = database["NAME"] if database["ENGINE"].endswith("sqlite3") else database.get("HOST")
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("filesystem://"):
        broker = f"embedded filesystem broker in {settings.VAR_DIR / 'celery'}"
    return "\n".join(
        [
            "",
            "Treat first, pay later is running:",
            f"  web       http://{WEB_ADDRESS}/  admin /admin/  API docs /api/docs/",
            f"  worker    Celery worker with beat on the {broker}",
            f"  insurer   simulator at {settings.INSURER_URL} (state {SIMULATOR_STATE})",
            f"  database  {database['ENGINE'].rsplit('.', 1)[-1]} {where}",
            "The demo logins are printed above by seed_demo. Ctrl-C stops everything.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
