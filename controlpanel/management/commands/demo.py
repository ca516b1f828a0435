"""`manage.py demo`: everything the offline demo needs, in one foreground command.

1. generate the demo keyset under var/ if there is none (it encrypts demo data only);
2. migrate the embedded SQLite database and load the demo data;
3. start the sandbox identity provider, the web server, a Celery worker and Celery beat;
4. stop all of them together on Ctrl-C, or as soon as one of them exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from controlpanel.demo_guard import demo_command_refuse_in_production


class Command(BaseCommand):
    help = "Set up the embedded demo and run the panel, the sandbox, a worker and beat until Ctrl-C."
    # The keyset may not exist yet: this command creates it before anything checks for it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
        parser.add_argument("--setup-only", action="store_true", help="prepare everything, start nothing")

    def handle(self, *args: Any, port: int, setup_only: bool, **options: Any) -> None:
        demo_command_refuse_in_production(command="demo")
        keyset_file = Path(settings.FIELD_ENCRYPTION_KEYSET_FILE or settings.VAR_DIR / "demo-keyset.json")
        if not settings.FIELD_ENCRYPTION_KEYSET and not keyset_file.exists():
            keyset_file.parent.mkdir(parents=True, exist_ok=True)
            call_command("generate_keyset", "--output", str(keyset_file))
        os.environ.setdefault("FIELD_ENCRYPTION_KEYSET_FILE", str(keyset_file))
        settings.FIELD_ENCRYPTION_KEYSET_FILE = str(keyset_file)

        call_command("check")
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            for key in ("data_folder_in", "data_folder_out", "processed_folder"):
                Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key])).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("load_demo_data")
        if setup_only:
            return

        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        processes = {
            "sandbox": [python, manage, "sandbox"],
            "web": [python, manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            "worker": [python, "-m", "celery", "-A", "controlpanel", "worker", "-l", "info", "-c", "2"],
            "beat": [
                python, "-m", "celery", "-A", "controlpanel", "beat", "-l", "info",
                "-s", str(settings.VAR_DIR / "celerybeat-schedule"),
            ],
        }  # fmt: skip
        self._supervise(processes, port)

    def _supervise(self, commands: dict[str, list[str]], port: int) -> None:
        children = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR) for name, cmd in commands.items()}  # noqa: S603
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo running: panel http://127.0.0.1:{port}/  "
                f"sandbox {settings.IDENTITY_AUTHORITY_HOST}  (Ctrl-C stops everything)"
            )
        )
        try:
            while all(child.poll() is None for child in children.values()):
                time.sleep(0.5)
            exited = [name for name, child in children.items() if child.poll() is not None]
            self.stderr.write(f"{', '.join(exited)} exited; stopping the demo.")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children.values():
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
