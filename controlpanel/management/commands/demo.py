"""`manage.py demo [--port 8000] [--sandbox-port 8443]`: everything the offline demo needs, in one
foreground command.

1. write the demo keyset (settings.DEMO_KEYSET_FILE) if there is none: it encrypts demo data only;
2. write the sandbox's directory, whose demo application's redirect URIs are on the panel's port;
3. migrate the embedded SQLite database and load the demo data;
4. start the sandbox, the web server, a Celery worker and beat, each logging to var/log/<name>.log,
   wait until each has started, and print a summary: the URLs, the staff sign-in, how to stop;
5. stop all of them together on Ctrl-C (or SIGTERM), or as soon as one of them exits.

The processes get SITE_URL and IDENTITY_AUTHORITY_HOST from the two ports; the settings derived
from them (redirect URIs, Graph, Partner Center) follow.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import IO, Any

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlpanel.demo_guard import demo_command_refuse_in_production
from controlpanel.demo_setup import (
    DemoUrls,
    demo_directory_write,
    demo_environment,
    demo_keyset_ensure,
    demo_path_shown,
    demo_summary,
)
from sandbox.control_client import SandboxClient, SandboxError

STARTUP_TIMEOUT_SECONDS = 120.0
LOG_TAIL_LINES = 20


class DemoStopped(Exception):
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP: stop the demo. SIGINT is handled explicitly, as a shell
    may start a background job with it ignored."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise DemoStopped


class Command(BaseCommand):
    help = (
        "Set up the embedded demo and run the panel, the sandbox, a worker and beat until Ctrl-C "
        "(logs in var/log/)."
    )
    # The keyset may not exist yet: this command creates it before anything checks for it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="the panel's port (default 8000)")
        parser.add_argument(
            "--sandbox-port", type=int, default=8443, help="the sandbox's HTTPS port (default 8443)"
        )
        parser.add_argument("--setup-only", action="store_true", help="prepare everything, start nothing")

    def handle(self, *args: Any, port: int, sandbox_port: int, setup_only: bool, **options: Any) -> None:
        demo_command_refuse_in_production(command="demo")
        if port == sandbox_port:
            raise CommandError("--port and --sandbox-port must differ.")
        urls = DemoUrls.on(port=port, sandbox_port=sandbox_port)
        var = Path(settings.VAR_DIR)
        self.stdout.write(f"Setting up the demo in {demo_path_shown(var)}/ ...")
        demo_keyset_ensure()
        directory = var / "sandbox" / "directory.toml"
        demo_directory_write(panel_port=port, path=directory)
        env = demo_environment(urls=urls, directory=directory)
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            for key in ("data_folder_in", "data_folder_out", "processed_folder"):
                Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key])).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        # In a process of its own, with the ports' settings: the application it stores names the
        # sandbox's URL and the panel's redirect URI. It runs the system checks too.
        self._run_quietly([sys.executable, "manage.py", "load_demo_data"], env=env)
        if setup_only:
            self.stdout.write(
                f"Demo ready in {demo_path_shown(var)}/ (panel {urls.panel}, sandbox {urls.sandbox})."
            )
            return

        manage = "manage.py"
        processes = {
            "sandbox": [sys.executable, manage, "sandbox", "--port", str(sandbox_port)],
            "web": [sys.executable, manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            "worker": [sys.executable, "-m", "celery", "-A", "controlpanel", "worker", "-l", "info", "-c", "2"],
            "beat": [
                sys.executable, "-m", "celery", "-A", "controlpanel", "beat", "-l", "info",
                "-s", str(var / "celerybeat-schedule"),
            ],
        }  # fmt: skip
        self._supervise(processes, env=env, urls=urls, log_dir=var / "log")

    def _run_quietly(self, command: list[str], *, env: dict[str, str]) -> None:
        run = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            raise CommandError(f"`{' '.join(command[1:])}` failed:\n{run.stdout}{run.stderr}")

    def _supervise(
        self,
        commands: dict[str, list[str]],
        *,
        env: dict[str, str],
        urls: DemoUrls,
        log_dir: Path,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logs = {name: log_dir / f"{name}.log" for name in commands}
        self.stdout.write(
            f"Starting the sandbox, the panel, a worker and beat (logs in {demo_path_shown(log_dir)}/) ..."
        )
        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        children: dict[str, subprocess.Popen[bytes]] = {}
        handles: list[IO[bytes]] = []
        try:
            for name, command in commands.items():
                handle = logs[name].open("wb")
                handles.append(handle)
                # A session of their own: Ctrl-C reaches this process only, which stops them in order.
                children[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and commands
                    command, cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL,
                    stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            self._wait_until_started(children, logs, urls)
            self.stdout.write(demo_summary(urls=urls, python=Path(sys.executable), log_dir=log_dir))
            self.stdout.flush()
            while not (exited := [name for name, child in children.items() if child.poll() is not None]):
                time.sleep(0.5)
            self._report_exit(exited, children, logs)
        except (KeyboardInterrupt, DemoStopped):
            self.stdout.write("\nStopping the demo ...")
        finally:
            # Web and beat first (nothing new is queued), then the worker, then the sandbox it calls.
            for name in ("web", "beat", "worker", "sandbox"):
                child = children.get(name)
                if child is not None and child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    try:
                        child.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
            for log in handles:
                log.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Demo stopped.")

    def _wait_until_started(
        self, children: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path], urls: DemoUrls
    ) -> None:
        sandbox = SandboxClient(urls.sandbox, Path(settings.SANDBOX_CA_BUNDLE), timeout=2)
        panel = requests.Session()
        panel.trust_env = False  # no proxy between this process and the panel it started
        started: dict[str, Callable[[], bool]] = {
            "sandbox": lambda: _answers(sandbox.health),
            "web": lambda: _answers(lambda: panel.get(f"{urls.panel}/healthz", timeout=2)),
            "worker": lambda: " ready." in _read(logs["worker"]),
            "beat": lambda: "beat: Starting" in _read(logs["beat"]),
        }
        waiting = set(started)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while waiting:
            if exited := [name for name, child in children.items() if child.poll() is not None]:
                self._report_exit(exited, children, logs)
                raise CommandError("The demo did not start.")
            waiting = {name for name in waiting if not started[name]()}
            if waiting and time.monotonic() > deadline:
                raise CommandError(
                    f"{', '.join(sorted(waiting))} did not start in time: see {logs[min(waiting)]}"
                )
            time.sleep(0.3)

    def _report_exit(
        self, exited: list[str], children: dict[str, subprocess.Popen[bytes]], logs: dict[str, Path]
    ) -> None:
        for name in exited:
            tail = "\n".join(_read(logs[name]).splitlines()[-LOG_TAIL_LINES:])
            self.stderr.write(
                f"{name} exited with status {children[name].returncode}; the end of {logs[name]}:\n{tail}"
            )
        self.stderr.write("Stopping the demo.")


def _answers(call: Callable[[], object]) -> bool:
    try:
        call()
    except (requests.RequestException, SandboxError, OSError):
        return False
    return True


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
