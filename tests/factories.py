"""factory_boy factories for the annotation models."""

from __future__ import annotations

import io

import factory
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image

from annotation.models import Rater, Session, Stimulus, Study


def png_bytes(color=(120, 160, 200), size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("pw")


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study

    slug = factory.Sequence(lambda n: f"study-{n}")
    title = factory.Sequence(lambda n: f"Study {n}")
    owner = factory.SubFactory(UserFactory)
    status = Study.Status.OPEN
    protocol = "perspectives"
    scale = "continuous"
    ratings_per_stimulus = 3
    session_size = 10
    gold_rate = 0.0
    # Tests submit as soon as they claim; the viewing-time check has its own tests.
    min_view_seconds = 0.0


class StimulusFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Stimulus

    study = factory.SubFactory(StudyFactory)
    original_name = factory.Sequence(lambda n: f"img{n:04d}.png")
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    width = 32
    height = 24
    role = Stimulus.Role.TEST
    image = factory.LazyAttribute(
        lambda o: ContentFile(png_bytes((int(o.sha256[-2:], 16), 100, 150)), name=f"{o.sha256}.png")
    )


class RaterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rater

    study = factory.SubFactory(StudyFactory)
    source = Rater.Source.ANONYMOUS


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    rater = factory.SubFactory(RaterFactory)
    stage = Session.Stage.RATING
    planned_items = 10


def rater_at_rating(study, external_id=""):
    """A rater of ``study`` (Prolific with an id, else anonymous) whose session is at the
    rating stage, entered through the services the entry and consent pages call."""
    from annotation import services

    rater, _ = services.rater_enter(
        study=study, source="prolific" if external_id else "anonymous", external_id=external_id
    )
    session = services.session_start(rater=rater)
    services.session_advance(session=session, stage=Session.Stage.RATING)
    return rater, session
