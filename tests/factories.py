"""factory_boy factories: one per model (StimulusTally has none: database triggers
keep it), and :func:`rated_study`, a study rated by simulated raters."""

from __future__ import annotations

import io
import math
import random
import uuid
from dataclasses import dataclass

import factory
import numpy as np
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from annotation import protocol
from annotation.models import (
    ApiToken,
    Claim,
    ImportJob,
    PaymentExport,
    PaymentExportLine,
    Rater,
    RaterDecision,
    Rating,
    Session,
    Stimulus,
    Study,
    StudyOutcome,
    StudyShare,
)
from scoring.models import (
    Analysis,
    ExportJob,
    ModelVersion,
    Prediction,
    RaterResult,
    ScoringJob,
    StimulusResult,
)


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


class StudyShareFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StudyShare

    study = factory.SubFactory(StudyFactory)
    user = factory.SubFactory(UserFactory)
    level = StudyShare.Level.VIEW


class StudyOutcomeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StudyOutcome

    study = factory.SubFactory(StudyFactory)
    kind = StudyOutcome.Kind.SCREENED_OUT
    platform = ""
    code = factory.Sequence(lambda n: f"SCREEN-{n}")


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


class RaterDecisionFactory(factory.django.DjangoModelFactory):
    """A researcher's decision about a rater (rows only: the services also change the
    rater, annotation.rater_decisions)."""

    class Meta:
        model = RaterDecision

    rater = factory.SubFactory(RaterFactory)
    kind = RaterDecision.Kind.EXCLUDE
    reason = "answered at random"
    decided_by = factory.LazyAttribute(lambda o: o.rater.study.owner)
    decided_by_name = factory.LazyAttribute(lambda o: o.decided_by.get_username())


class PaymentExportFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaymentExport

    study = factory.SubFactory(StudyFactory)
    platform = "prolific"
    kind = PaymentExport.Kind.APPROVE
    created_by = factory.LazyAttribute(lambda o: o.study.owner)
    created_by_name = factory.LazyAttribute(lambda o: o.created_by.get_username())


class PaymentExportLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PaymentExportLine

    export = factory.SubFactory(PaymentExportFactory)
    rater = factory.SubFactory(
        RaterFactory,
        study=factory.SelfAttribute("..export.study"),
        source=Rater.Source.PROLIFIC,
        external_id=factory.Sequence(lambda n: f"60pid{n:06d}"),
    )
    kind = factory.SelfAttribute("export.kind")
    external_id = factory.SelfAttribute("rater.external_id")


class PilotRaterFactory(RaterFactory):
    """A researcher's pilot preview rater (the database requires its pilot_user)."""

    source = Rater.Source.PILOT
    pilot_user = factory.LazyAttribute(lambda o: o.study.owner)


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    rater = factory.SubFactory(RaterFactory)
    stage = Session.Stage.RATING
    planned_items = 10


class ClaimFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Claim

    stimulus = factory.SubFactory(StimulusFactory)
    rater = factory.SubFactory(RaterFactory, study=factory.SelfAttribute("..stimulus.study"))
    session = factory.SubFactory(SessionFactory, rater=factory.SelfAttribute("..rater"))


class RatingFactory(factory.django.DjangoModelFactory):
    """A rating of every dimension of the study's preset: ``score`` each (the scale's
    middle unless given); a dimension passed by name (``overall=80``) keeps its value."""

    class Meta:
        model = Rating

    class Params:
        score = None

    stimulus = factory.SubFactory(StimulusFactory)
    rater = factory.SubFactory(RaterFactory, study=factory.SelfAttribute("..stimulus.study"))
    session = factory.SubFactory(SessionFactory, rater=factory.SelfAttribute("..rater"))
    protocol = factory.LazyAttribute(lambda o: o.stimulus.study.protocol)
    scale = factory.LazyAttribute(lambda o: o.stimulus.study.scale)
    is_gold = factory.LazyAttribute(lambda o: o.stimulus.role == Stimulus.Role.GOLD)
    viewing_seconds = 5.0
    client_id = factory.LazyFunction(uuid.uuid4)
    preset_scores = factory.LazyAttribute(
        lambda o: dict.fromkeys(
            protocol.PRESETS[o.protocol],
            _middle(protocol.get_scale(o.scale)) if o.score is None else float(o.score),
        )
    )

    @classmethod
    def _adjust_kwargs(cls, **kwargs):
        for key, value in kwargs.pop("preset_scores").items():
            kwargs.setdefault(key, value)
        return kwargs


def _middle(scale: protocol.Scale) -> float:
    middle = (scale.minimum + scale.maximum) / 2
    return float(round(middle)) if scale.integer else middle


class _FinishedJob(factory.django.DjangoModelFactory):
    """A job that has run: done, handed to the broker, with its times (pass
    ``status=`` for another state; a queued one gets no times)."""

    class Meta:
        abstract = True

    status = "done"
    waiting_for_broker = False
    started_at = factory.LazyAttribute(lambda o: None if o.status == "queued" else timezone.now())
    finished_at = factory.LazyAttribute(
        lambda o: o.started_at if o.status in ("done", "failed", "cancelled") else None
    )


class AnalysisFactory(_FinishedJob):
    class Meta:
        model = Analysis

    study = factory.SubFactory(StudyFactory)
    method = "mean"


class StimulusResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StimulusResult

    analysis = factory.SubFactory(AnalysisFactory)
    stimulus = factory.SubFactory(StimulusFactory, study=factory.SelfAttribute("..analysis.study"))
    dimension = "overall"
    mos = 50.0
    std = 10.0
    ci_low = 40.0
    ci_high = 60.0
    n = 3


class RaterResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RaterResult

    analysis = factory.SubFactory(AnalysisFactory)
    rater = factory.SubFactory(RaterFactory, study=factory.SelfAttribute("..analysis.study"))
    n = 10
    bias = 0.0
    inconsistency = 1.0
    p = 0.0
    q = 0.0
    corr = 0.9
    rejected = False


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A weight-free baseline (no checkpoint needed)."""

    class Meta:
        model = ModelVersion

    name = factory.Sequence(lambda n: f"model-{n}")
    kind = ModelVersion.Kind.BASELINE
    baseline = "sharpness"


class ScoringJobFactory(_FinishedJob):
    class Meta:
        model = ScoringJob

    model_version = factory.SubFactory(ModelVersionFactory)
    study = factory.SubFactory(StudyFactory)


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prediction

    model_version = factory.SubFactory(ModelVersionFactory)
    stimulus = factory.SubFactory(StimulusFactory)
    technical = 0.5
    rationality = 0.5
    naturalness = 0.5


class ExportJobFactory(_FinishedJob):
    class Meta:
        model = ExportJob

    study = factory.SubFactory(StudyFactory)
    format = "agin-csv"


class ImportJobFactory(_FinishedJob):
    """A stimulus import that has run: one file imported (the upload's name is kept;
    the file itself is deleted once a job has run)."""

    class Meta:
        model = ImportJob

    study = factory.SubFactory(StudyFactory)
    archive = "imports/upload.zip"
    archive_name = "upload.zip"
    total = 1
    done = 1
    imported = 1
    report = factory.LazyFunction(
        lambda: [{"name": "a.png", "status": "imported", "reason": "32x24 PNG, test"}]
    )


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """A named API token; its key is unknown (annotation.tokens.token_create returns one)."""

    class Meta:
        model = ApiToken

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"token {n}")
    key_hash = factory.Sequence(lambda n: f"{n:064x}")
    key_prefix = "swt_0000"


# --- A study rated by simulated raters, with a known ground truth ------------------

GENERATORS = ("painter-a", "painter-b", "painter-c")
DEGRADATIONS = ("blur", "noise", "luminance", "contrast", "blocks")
SCENE_SIZE = (96, 72)


def scene_png(seed: int, degradation: str | None = None, strength: float = 0.0) -> bytes:
    """A small picture of hard-edged shapes, degraded by ``degradation`` at ``strength``
    (0..1): blur lowers its sharpness, noise raises it, and so on."""
    rng = random.Random(seed)
    img = Image.new("RGB", SCENE_SIZE, tuple(rng.randint(60, 200) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    w, h = SCENE_SIZE
    for _ in range(12):
        x, y = rng.randint(0, w - 8), rng.randint(0, h - 8)
        box = [x, y, x + rng.randint(6, w // 2), y + rng.randint(6, h // 2)]
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=colour)
    if degradation == "blur":
        img = img.filter(ImageFilter.GaussianBlur(radius=0.5 + 5.5 * strength))
    elif degradation == "noise":
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + np.random.default_rng(seed).normal(0, 6 + 44 * strength, arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif degradation == "luminance":
        img = ImageEnhance.Brightness(img).enhance(1 - 0.75 * strength)
    elif degradation == "contrast":
        img = ImageEnhance.Contrast(img).enhance(max(0.08, 1 - 0.9 * strength))
    elif degradation == "blocks":
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=max(1, int(30 - 29 * strength)))
        img = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    elif degradation is not None:
        raise ValueError(f"unknown degradation {degradation!r}")
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class SimulatedRater:
    """Scores the truth plus a personal bias and noise (0-100 units); a careless one
    answers at random."""

    bias: float
    noise: float
    careless: bool

    def score(self, truth: float, rng: random.Random, scale: protocol.Scale) -> float:
        unit = (scale.maximum - scale.minimum) / 100
        if self.careless:
            value = rng.uniform(scale.minimum, scale.maximum)
        else:
            value = scale.minimum + (truth + self.bias + rng.gauss(0, self.noise)) * unit
        return float(round(min(scale.maximum, max(scale.minimum, value))))


def rated_study(
    *,
    n_raters: int = 20,
    n_scenes: int = 10,
    items_per_rater: int = 18,
    careless_share: float = 0.12,
    seed: int = 2024,
    **study_fields,
) -> Study:
    """An open AGIN study rated by ``n_raters`` simulated raters, written row by row
    with the factories (no services, no assignment).

    Test images: ``n_scenes`` scenes, each clean and under every degradation of
    :data:`DEGRADATIONS` at a random strength (generators painter-a/b/c by scene).
    Every stimulus's metadata holds ``degradation``, ``strength`` and its ``truth``
    per dimension (0-100), so analyses can be checked against it. Plus 4 gold and
    4 training images. Each rater rates ``items_per_rater`` test images (spread
    evenly) and 2 gold ones, in one finished session; careless raters (at least one
    from 5 raters) answer at random, fail both gold items and are excluded, as the
    gold rule would do. Raters' profiles are in ``platform`` (``careless``...).
    """
    rng = random.Random(seed)
    fields = {
        "protocol": "agin",
        "scale": "continuous",
        "ratings_per_stimulus": 8,
        "session_size": 20,
        "gold_rate": 0.1,
        "gold_fail_limit": 2,
        **study_fields,
    }
    study = StudyFactory(**fields)
    scale = study.scale_def
    keys = list(protocol.PRESETS[study.protocol])

    def stimulus(name, generator, task, degradation, strength, base, role, scene_seed):
        overall = max(0.0, min(100.0, base - 48 * strength))
        truth = {key: round(overall, 1) for key in keys}
        png = scene_png(scene_seed, degradation, strength)
        extra = {}
        if role != Stimulus.Role.TEST:
            half = 20 if role == Stimulus.Role.TRAINING else 30
            extra = {
                "expected_low": max(0, overall - half),
                "expected_high": min(100, overall + half),
            }
        return StimulusFactory(
            study=study,
            original_name=name,
            image=ContentFile(png, name=name),
            width=SCENE_SIZE[0],
            height=SCENE_SIZE[1],
            byte_size=len(png),
            role=role,
            generator=generator,
            task=task,
            prompt=f"shapes, scene {scene_seed}",
            metadata={
                "degradation": degradation or "none",
                "strength": strength,
                "truth": truth,
            },
            **extra,
        )

    tests: list[Stimulus] = []
    for i in range(n_scenes):
        base = rng.uniform(80, 92)
        generator = GENERATORS[i % len(GENERATORS)]
        for kind in (None, *DEGRADATIONS):
            strength = 0.0 if kind is None else round(rng.uniform(0.2, 1.0), 2)
            label = f"{kind}-{round(strength * 100):03d}" if kind else "clean"
            task = "clean" if kind is None else "technical-degradation"
            tests.append(
                stimulus(
                    f"scene{i:02d}-{label}.png",
                    generator,
                    task,
                    kind,
                    strength,
                    base,
                    "test",
                    seed + i,
                )
            )
    gold = [
        stimulus(
            f"gold-{k}.png",
            "painter-a",
            "check",
            kind,
            1.0 if kind else 0.0,
            88.0,
            "gold",
            seed + 50 + k,
        )
        for k, kind in enumerate((None, "blur", "blocks", "luminance"))
    ]
    for k, kind in enumerate((None, "blur", "noise", "contrast")):
        stimulus(
            f"training-{k}.png",
            "painter-a",
            "training",
            kind,
            0.5 if kind else 0.0,
            88.0,
            "training",
            seed + 90 + k,
        )

    n_careless = max(1, math.floor(n_raters * careless_share)) if n_raters >= 5 else 0
    ratings = []
    for index in range(n_raters):
        profile = SimulatedRater(
            bias=round(rng.gauss(0, 8), 2),
            noise=round(rng.uniform(5, 12), 2),
            careless=index < n_careless,
        )
        rater = RaterFactory(
            study=study,
            source=Rater.Source.SIMULATED,
            external_id=f"sim-{index + 1:03d}",
            platform={"bias": profile.bias, "noise": profile.noise, "careless": profile.careless},
        )
        session = SessionFactory(
            rater=rater,
            stage=Session.Stage.DONE,
            planned_items=items_per_rater,
            finished_at=timezone.now(),
        )
        start = index * items_per_rater
        rated = [tests[(start + j) % len(tests)] for j in range(min(items_per_rater, len(tests)))]
        failures = 0
        for item in [*rated, *rng.sample(gold, 2)]:
            truth = item.metadata["truth"]
            scores = {key: profile.score(truth[key], rng, scale) for key in keys}
            if item.role == Stimulus.Role.GOLD:
                low, high = item.expected_low, item.expected_high
                failures += not low <= scores["overall"] <= high or profile.careless
            ratings.append(
                RatingFactory.build(
                    stimulus=item,
                    rater=rater,
                    session=session,
                    viewing_seconds=round(rng.uniform(3.5, 14.0), 2),
                    client_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                    **scores,
                )
            )
        excluded = failures >= study.gold_fail_limit
        Rater.objects.filter(pk=rater.pk).update(
            gold_failures=failures,
            status=Rater.Status.EXCLUDED if excluded else Rater.Status.COMPLETED,
            status_reason="failed the gold questions" if excluded else "",
        )
        if excluded:
            Session.objects.filter(pk=session.pk).update(stage=Session.Stage.STOPPED)
    Rating.objects.bulk_create(ratings)
    return study


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


def entry(study) -> str:
    """The study's rater link (the rater endpoints are under it)."""
    return f"/s/{study.slug}/"


def client_at_rating(client, study, external_id: str) -> Rater:
    """A Prolific rater who opened the study link with ``client`` (which now holds
    their token cookie), with their session moved on to the rating stage."""
    from annotation import services

    client.get(entry(study), {"PROLIFIC_PID": external_id})
    rater = Rater.objects.get(study=study, external_id=external_id)
    services.session_advance(session=rater.sessions.get(), stage=Session.Stage.RATING)
    return rater


def pilot_at_rating(study, user=None):
    """A pilot preview of ``study`` by ``user`` (the owner by default), started as the
    study page's button starts it, with its session at the rating stage."""
    from annotation import pilot, services

    rater = pilot.pilot_start(study=study, user=user or study.owner).rater
    session = services.session_start(rater=rater)
    services.session_advance(session=session, stage=Session.Stage.RATING)
    return rater, session


def raters_rate_everything(study, n_raters: int, scores_for=None):
    """``n_raters`` raters enter ``study`` and rate every image they are handed, through
    the services (``scores_for(rater_index, stimulus_id)`` gives each rating's scores;
    by default the scale's middle on every dimension of the study's preset)."""
    import uuid

    from annotation import assignment, protocol, services

    middle = (
        protocol.get_scale(study.scale).minimum
        + (protocol.get_scale(study.scale).maximum - protocol.get_scale(study.scale).minimum) / 2
    )
    keys = [d.key for d in protocol.dimensions_for(study.protocol)]
    for i in range(n_raters):
        rater, session = rater_at_rating(study, external_id=f"{study.slug}-R{i}")
        while (claim := assignment.claim_next(session=session)) is not None:
            scores = scores_for(i, claim.stimulus_id) if scores_for else dict.fromkeys(keys, middle)
            services.rating_submit(
                rater=rater,
                stimulus_id=claim.stimulus_id,
                scores=scores,
                client_id=uuid.uuid4(),
                viewing_seconds=5.0,
                check_view_time=False,
            )
