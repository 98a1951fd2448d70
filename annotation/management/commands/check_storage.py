"""Prove the media store works from this machine: write, read back and delete a
probe object (studyweb.storage.probe). Run it on every web server and worker after
configuring MEDIA_STORAGE (docs/deployment.md); it exits non-zero, saying which
step failed and which setting to look at, when the store does not answer."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from studyweb import storage


class Command(BaseCommand):
    help = "Write, read back and delete a probe object in the media store (MEDIA_STORAGE)."
    # It is the check: the system checks would stop it with the same probe's error.
    requires_system_checks: list[str] = []

    def handle(self, *args, **options):
        try:
            done = storage.probe()
        except storage.StoreUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"media store OK: {done}"))
