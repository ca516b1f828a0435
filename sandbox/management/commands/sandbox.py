"""`python manage.py sandbox [--host 127.0.0.1] [--port 8443] [--directory FILE] [--state-dir DIR]`:
serve the local Entra ID emulator over HTTPS. Thin: parses arguments and calls `sandbox.server.run`."""

from __future__ import annotations

import ipaddress
import os
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from controlpanel.demo_guard import demo_command_refuse_in_production
from sandbox.directory import DEMO_DIRECTORY, DirectoryError, load_directory


class Command(BaseCommand):
    # The sandbox shares nothing with the panel (no tables, no keyset), so the panel's checks don't apply.
    requires_system_checks: list[str] = []
    help = "Run the sandbox: a local Microsoft Entra ID (+ Partner Center and Graph stubs), HTTPS only."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
        parser.add_argument("--port", type=int, default=8443)
        parser.add_argument(
            "--directory",
            type=Path,
            default=Path(os.environ.get("SANDBOX_DIRECTORY", DEMO_DIRECTORY)),
            help="directory TOML file (env SANDBOX_DIRECTORY; default: the shipped demo directory)",
        )
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=Path(settings.SANDBOX_CA_BUNDLE).parent,
            help="where the CA bundle (ca.pem), TLS and signing keys live (default: var/sandbox)",
        )
        parser.add_argument(
            "--signing-processes",
            type=int,
            default=int(os.environ.get("SANDBOX_SIGNING_PROCESSES", os.cpu_count() or 1)),
            help="processes that sign tokens (env SANDBOX_SIGNING_PROCESSES; default: one per core; 0: inline)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        demo_command_refuse_in_production(command="sandbox")
        from sandbox.server import run

        try:
            load_directory(options["directory"])
        except DirectoryError as exc:
            raise CommandError(str(exc)) from exc
        try:
            loopback = ipaddress.ip_address(options["host"]).is_loopback
        except ValueError:
            loopback = options["host"] == "localhost"
        if not loopback:
            self.stderr.write(
                "warning: binding a non-loopback address; the control API still answers loopback only"
            )
        run(
            host=options["host"],
            port=options["port"],
            directory_path=options["directory"],
            state_dir=options["state_dir"],
            signing_processes=options["signing_processes"],
        )
