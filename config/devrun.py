"""``make run``: the whole product on embedded defaults, in the foreground.

Starts the insurer simulator, migrates the database (SQLite under ``var/`` unless
``DATABASE_URL`` is set), loads the demo data (the same logins, tokens and bank key at every
start), then starts the web server and a Celery worker with beat (on the embedded filesystem
broker unless ``CELERY_BROKER_URL`` is set). The banner says what runs where once it answers.

Stopping the insurer simulator is how a person sees an outage: the web server and the worker
go on (settlements fall back to self-pay, claims wait) and the simulator can be started again.
Ctrl-C stops everything. Ports: ``WEB_PORT`` (8000) and ``INSURER_SIM_PORT`` (8765); with
``INSURER_URL`` set to another insurer, no simulator is started.

The SMS gateway and credit-score simulators start the same way (``SMS_SIM_PORT`` 8766,
``CREDIT_SCORE_SIM_PORT`` 8767, none with ``SMS_URL`` or ``CREDIT_SCORE_URL`` set); the banner
names the page where the SMS simulator shows the messages it received, login codes included.
"""

import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MANAGE = [PYTHON, str(BASE_DIR / "manage.py")]
# Simulators of the outside services patients meet: name -> (URL variable, port variable,
# default port, command, URL path). Their stopping is an outage too, not a reason to stop.
OUTSIDE = {
    "sms": ("SMS_URL", "SMS_SIM_PORT", 8766, "run_sms_simulator", "/"),
    "score": ("CREDIT_SCORE_URL", "CREDIT_SCORE_SIM_PORT", 8767, "run_credit_score_simulator", ""),
}


def env_port(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"{name} must be a port number, not {value!r}")
    return int(value)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    web_port = env_port("WEB_PORT", 8000)
    sim_port = env_port("INSURER_SIM_PORT", 8765)
    var_dir = Path(os.environ.get("DJANGO_VAR_DIR", BASE_DIR / "var"))
    var_dir.mkdir(parents=True, exist_ok=True)
    simulator = None
    if not os.environ.get("INSURER_URL"):
        os.environ["INSURER_URL"] = f"http://127.0.0.1:{sim_port}"
        state = var_dir / "insurer-sim.json"
        simulator = MANAGE + ["run_insurer_simulator", "--port", str(sim_port)]
        simulator += ["--state", str(state)]
    commands = {"insurer": simulator} if simulator is not None else {}
    for name, (url_var, port_var, default_port, command, path) in OUTSIDE.items():
        port = env_port(port_var, default_port)
        if not os.environ.get(url_var):
            os.environ[url_var] = f"http://127.0.0.1:{port}{path}"
            commands[name] = MANAGE + [command, "--port", str(port)]

    processes: dict[str, subprocess.Popen[bytes]] = {}
    # A plain `kill` or a closed terminal stops the children too, as Ctrl-C does.
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, lambda *_: sys.exit(0))
    try:
        if simulator is not None:
            processes["insurer"] = start(simulator)
            if not answers(f"{os.environ['INSURER_URL']}/sim/state", processes["insurer"]):
                print(f"The insurer simulator did not start on port {sim_port}.", file=sys.stderr)
                return 1
        for name in [name for name in OUTSIDE if name in commands]:
            processes[name] = start(commands[name])
            url = os.environ[OUTSIDE[name][0]].rstrip("/")
            if not answers(f"{url}/sim/state", processes[name]):
                print(f"`{shlex.join(commands[name][2:])}` did not start.", file=sys.stderr)
                return 1
        for step in (["migrate", "--noinput"], ["seed_demo"]):
            result = subprocess.run(  # noqa: S603
                MANAGE + step, cwd=BASE_DIR, check=False, capture_output=True, text=True
            )
            if result.returncode:
                print(result.stdout + result.stderr, file=sys.stderr)
                print(f"`manage.py {' '.join(step)}` failed; stopping.", file=sys.stderr)
                return 1
        demo = result.stdout
        processes["web"] = start(MANAGE + ["runserver", f"127.0.0.1:{web_port}", "--noreload"])
        processes["worker"] = start(
            [PYTHON, "-m", "celery", "-A", "config", "worker", "-B", "--loglevel", "info"]
            + ["--concurrency", "2"]
        )
        if not answers(f"http://127.0.0.1:{web_port}/healthz", processes["web"], timeout=60):
            print(f"The web server did not answer on port {web_port}; stopping.", file=sys.stderr)
            return 1
        print(demo + banner(web_port, simulator, processes), flush=True)
        return supervise(processes, commands)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
        return 0
    finally:
        stop(processes.values())


def start(command: list[str]) -> "subprocess.Popen[bytes]":
    # A session of its own, so Ctrl-C reaches only this supervisor, which stops the children.
    return subprocess.Popen(command, cwd=BASE_DIR, start_new_session=True)  # noqa: S603


def answers(url: str, process: "subprocess.Popen[bytes]", timeout: float = 30) -> bool:
    """Whether ``url`` answers 200 before ``timeout`` seconds, while ``process`` runs."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with opener.open(url, timeout=2) as answer:  # noqa: S310 - our own http URL
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def supervise(
    processes: dict[str, "subprocess.Popen[bytes]"], commands: dict[str, list[str]]
) -> int:
    """Wait; a stopped web server or worker stops everything, a stopped simulator nothing."""
    while True:
        for name, process in list(processes.items()):
            if process.poll() is None:
                continue
            if name not in commands:
                print(f"{name} exited with {process.returncode}; stopping.", file=sys.stderr)
                return 1
            del processes[name]
            if name in OUTSIDE:
                print(
                    f"\nThe {name} simulator stopped; the web server and the worker go on. "
                    f"Start it again (in another terminal) with\n  {shlex.join(commands[name])}\n",
                    flush=True,
                )
                continue
            print(
                "\nThe insurer simulator stopped: this is an insurer outage. Settlements now "
                "fall back to self-pay and their claims wait; the web server and the worker go "
                "on. Start the simulator again (in another terminal) with\n  "
                + shlex.join(commands[name])
                + "\nand the worker moves each deferred claim back to the insurer.\n",
                flush=True,
            )
        time.sleep(0.5)


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
            process.wait()


def banner(
    web_port: int, simulator: list[str] | None, processes: dict[str, "subprocess.Popen[bytes]"]
) -> str:
    import django

    django.setup()
    from django.conf import settings

    database = settings.DATABASES["default"]
    where = database["NAME"] if database["ENGINE"].endswith("sqlite3") else database.get("HOST")
    broker = settings.CELERY_BROKER_URL
    if broker.startswith("filesystem://"):
        broker = f"the embedded filesystem broker in {settings.VAR_DIR / 'celery'}"
    web = f"http://127.0.0.1:{web_port}/"
    if simulator is not None:
        services = [
            f"  insurer   simulator at {settings.INSURER_URL} (pid {processes['insurer'].pid})",
            f"            stop it to see an outage: kill {processes['insurer'].pid}",
            f'            or make it fail: curl -d \'{{"mode": "fail"}}\' '
            f"{settings.INSURER_URL}/sim/control  (modes ok, fail, hang, drop)",
        ]
    else:
        services = [f"  insurer   {settings.INSURER_URL} (INSURER_URL; no simulator started)"]
    if "sms" in processes:
        sms_page = settings.SMS_URL.rstrip("/") + "/"
        services += [
            f"  sms       simulator at {settings.SMS_URL} (pid {processes['sms'].pid})",
            f"            SMS messages: {sms_page}  (login codes and notices land here)",
        ]
    else:
        services += [f"  sms       {settings.SMS_URL} (SMS_URL; no simulator started)"]
    if "score" in processes:
        services += [
            f"  score     credit-score simulator at {settings.CREDIT_SCORE_URL} "
            f"(pid {processes['score'].pid})"
        ]
    else:
        services += [f"  score     {settings.CREDIT_SCORE_URL} (CREDIT_SCORE_URL; no simulator)"]
    return "\n".join(
        [
            "",
            "Treat first, pay later is running:",
            f"  web       {web} (pid {processes['web'].pid})  admin {web}admin/  "
            f"API docs {web}api/docs/",
            f"  worker    Celery worker with beat on {broker} (pid {processes['worker'].pid})",
            *services,
            f"  database  {database['ENGINE'].rsplit('.', 1)[-1]} {where}",
            "Sign in with the demo logins above (the patient's SMS code: the SMS messages page)."
            " Ctrl-C stops everything.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
