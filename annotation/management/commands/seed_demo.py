"""Create the demo study (slug ``demo``) and, optionally, simulated raters.

Safe to run again: accounts and the study are reused, identical images are
skipped by their sha256, and a simulated rater that already exists is not
simulated twice.

Accounts: ``admin`` (superuser) and ``researcher`` (the demo study's owner). Their
passwords come from ``--admin-password`` / ``--researcher-password`` or the
environment (``SEED_ADMIN_PASSWORD`` / ``SEED_RESEARCHER_PASSWORD``); with neither,
``DEBUG=1`` (``make run``) uses the well-known demo logins ``admin`` / ``admin`` and
``researcher`` / ``researcher``, and any other set-up gets random passwords printed
once, so a server seeded by mistake never opens with a guessable login. An account
that exists already keeps its password.
"""

from __future__ import annotations

import csv
import os
import random
import secrets
import tempfile
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import assignment, demo, services
from annotation.importing import stimuli_import
from annotation.models import Rater, Session, Stimulus, Study
from studyweb.storage import StoreUnavailable

DEMO_SLUG = "demo"
DEMO_BREAK_EVERY = 8  # a break after the 8th and the 16th of a session of 20
DEMO_INSTRUCTIONS = (
    "You will see drawings of simple outdoor scenes, some of them altered. For each image, "
    "rate how natural it looks overall, then from the technical side (is it a good picture?) "
    "and from the rationality side (does its content make sense?). There are no right or "
    "wrong answers except on a few check questions; use the whole scale."
)
# username -> (option, environment variable); the demo login under DEBUG=1 is the username.
ACCOUNTS = {
    "admin": ("admin_password", "SEED_ADMIN_PASSWORD"),
    "researcher": ("researcher_password", "SEED_RESEARCHER_PASSWORD"),
}


class Command(BaseCommand):
    help = "Create the demo study with locally generated images; optionally simulate raters."

    def add_arguments(self, parser):
        parser.add_argument(
            "--simulate-raters",
            type=int,
            default=0,
            metavar="N",
            help="also fill the study with N simulated raters' complete sessions",
        )
        parser.add_argument("--seed", type=int, default=2024, help="random seed")
        parser.add_argument(
            "--admin-password",
            default=None,
            help="password of the 'admin' superuser when it is created "
            "(else $SEED_ADMIN_PASSWORD; else 'admin' under DEBUG=1, a random one otherwise)",
        )
        parser.add_argument(
            "--researcher-password",
            default=None,
            help="password of the 'researcher' account when it is created "
            "(else $SEED_RESEARCHER_PASSWORD; else 'researcher' under DEBUG=1, "
            "a random one otherwise)",
        )

    def handle(self, *args, simulate_raters: int, seed: int, **options):
        if simulate_raters < 0:
            raise CommandError("--simulate-raters must be 0 or more")
        User = get_user_model()
        existing = set(
            User.objects.filter(username__in=ACCOUNTS).values_list("username", flat=True)
        )
        # Every password is settled (and checked) before anything is written, so a
        # refused one leaves the database as it was.
        passwords: dict[str, tuple[str, bool]] = {}
        for username, (option, variable) in ACCOUNTS.items():
            if username in existing:
                continue
            given = options.get(option) or os.environ.get(variable) or ""
            if given:
                if not settings.DEBUG:
                    try:
                        password_validation.validate_password(given, User(username=username))
                    except ValidationError as exc:
                        flag = "--" + option.replace("_", "-")
                        raise CommandError(
                            f"{flag} / {variable}: {' '.join(exc.messages)}"
                        ) from None
                passwords[username] = (given, False)
            elif settings.DEBUG:
                passwords[username] = (username, False)  # the demo login of `make run`
            else:
                passwords[username] = (secrets.token_urlsafe(12), True)
        self._account("admin", passwords, defaults={"is_staff": True, "is_superuser": True})
        researcher = self._account(
            "researcher",
            passwords,
            defaults={"is_staff": True, "email": "researcher@example.org"},
        )
        study, created = Study.objects.get_or_create(
            slug=DEMO_SLUG,
            defaults={
                "title": "Demo: how natural do these scenes look?",
                "owner": researcher,
                "instructions": DEMO_INSTRUCTIONS,
                "protocol": "agin",
                "scale": "continuous",
                "ratings_per_stimulus": 8,
                "session_size": 20,
                # A break within one session of 20, so a first try shows the break
                # screen (the default, every 40 items, never comes in the demo).
                "break_every": DEMO_BREAK_EVERY,
                "gold_rate": 0.1,
                "gold_fail_limit": 2,
                "status": Study.Status.OPEN,
                "completion_code": "DEMO2024",
            },
        )
        self.stdout.write(f"study {study.slug}: {'created' if created else 'exists'}")
        if not created and study.break_every >= study.session_size:
            # A demo database seeded before the break came within a session.
            Study.objects.filter(pk=study.pk).update(break_every=DEMO_BREAK_EVERY)
        self._import_images(study, seed)
        if simulate_raters:
            self._simulate(study, simulate_raters, seed)
        n_ratings = sum(s.ratings.count() for s in study.stimuli.all())
        self.stdout.write(
            self.style.SUCCESS(
                f"demo ready: {study.stimuli.count()} stimuli, {study.raters.count()} raters, "
                f"{n_ratings} ratings"
            )
        )

    def _account(self, username: str, passwords: dict, *, defaults: dict):
        """The account, created with its settled password unless it exists."""
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults=defaults)
        if not created or username not in passwords:
            self.stdout.write(f"account {username}: exists, password unchanged")
            return user
        password, generated = passwords[username]
        user.set_password(password)
        user.save()
        if generated:
            # Shown this once: only its hash is stored.
            self.stdout.write(
                f"account {username}: created with the generated password {password} "
                "(shown once; change it at /accounts/password/)"
            )
        else:
            self.stdout.write(f"account {username}: created")
        return user

    def _import_images(self, study: Study, seed: int) -> None:
        images = demo.demo_images(seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            for item in images:
                (folder / item.name).write_bytes(item.png)
            meta = Path(tmp) / "metadata.csv"
            with meta.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(
                    [
                        "filename",
                        "generator",
                        "task",
                        "prompt",
                        "role",
                        "expected_low",
                        "expected_high",
                        "degradation",
                        "perspective",
                        "strength",
                        "scene",
                    ]
                )
                for i, item in enumerate(images):
                    low, high = item.expected or ("", "")
                    m = item.metadata
                    writer.writerow(
                        [
                            item.name,
                            demo.GENERATORS[m["scene"] % 3] if m["scene"] != 99 else "painter-a",
                            "clean"
                            if m["perspective"] == "none"
                            else f"{m['perspective']}-degradation",
                            f"a small house with trees under the sun (scene {m['scene']}, #{i})",
                            item.role,
                            low,
                            high,
                            m["degradation"],
                            m["perspective"],
                            m["strength"],
                            m["scene"],
                        ]
                    )
            try:
                report = stimuli_import(study=study, source=folder, metadata_csv=meta)
            except StoreUnavailable as exc:
                raise CommandError(f"demo images not stored: {exc}") from None
        # The ground truth travels in metadata so analyses of the demo can check themselves.
        truths = {item.name: item.truth for item in images}
        for stimulus in study.stimuli.filter(metadata__truth__isnull=True):
            if stimulus.original_name in truths:
                stimulus.metadata = {**stimulus.metadata, "truth": truths[stimulus.original_name]}
                stimulus.save(update_fields=["metadata"])
        self.stdout.write(f"images: {report.summary()}")
        for outcome in report.outcomes:
            if outcome.status == "rejected":
                raise CommandError(f"demo image rejected: {outcome.name}: {outcome.reason}")

    def _simulate(self, study: Study, n: int, seed: int) -> None:
        rng = random.Random(seed)
        scale = study.scale_def
        keys = [d.key for d in study.dimensions]
        written = 0
        for index, profile in enumerate(demo.simulated_raters(n, seed=seed)):
            external_id = f"sim-{index + 1:03d}"
            rater, created = services.rater_enter(
                study=study,
                source=Rater.Source.SIMULATED,
                external_id=external_id,
                platform={
                    "bias": profile.bias,
                    "noise": profile.noise,
                    "careless": profile.careless,
                },
            )
            if not created:
                continue
            try:
                session = services.session_start(rater=rater, user_agent="seed_demo simulator")
            except services.StudyFull:
                # Every image has its ratings (or the last are held): more raters
                # would be turned away, as a real rater would be.
                rater.delete()
                self.stdout.write(f"simulated raters: the study is full after {index}")
                break
            services.session_advance(session=session, stage=Session.Stage.RATING)
            while True:
                claim = assignment.claim_next(session=session)
                if claim is None:
                    break
                stimulus: Stimulus = claim.stimulus
                truth = demo.scale_truth(stimulus.metadata.get("truth", {}), scale)
                if not truth:
                    truth = {k: (scale.minimum + scale.maximum) / 2 for k in keys}
                result = services.rating_submit(
                    rater=rater,
                    stimulus_id=stimulus.pk,
                    scores=profile.scores(truth, keys, rng, scale),
                    client_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                    viewing_seconds=round(rng.uniform(3.5, 14.0), 2),
                    check_view_time=False,  # simulated: nothing is looked at
                )
                written += int(result.created)
                rater.refresh_from_db(fields=["status"])
            if rater.status == Rater.Status.EXCLUDED:
                services.session_advance(session=session, stage=Session.Stage.STOPPED)
            else:
                services.session_finish(session=session)
        self.stdout.write(f"simulated raters: {written} ratings written")
