"""Bounds in the database: every numeric study setting within its range (STUDY_BOUNDS),
the researchers' texts and the prompts within their lengths, and a rater's
crowd-platform parameters within MAX_PLATFORM_JSON_CHARS. Rows written before the
bounds (through the admin, or the platform merge) are brought within them first, so
the checks can be added to a database in use."""

import django.core.validators
import django.db.models.functions.comparison
import django.db.models.functions.text
import django.db.models.lookups
from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Length


# Copied, not imported: a migration keeps the values it was written with.
BOUNDS = {
    "ratings_per_stimulus": (1, 1000),
    "session_size": (1, 10_000),
    "max_items_per_rater": (1, 2**31 - 1),
    "gold_rate": (0.0, 0.5),
    "gold_fail_limit": (0, 100),
    "min_view_seconds": (0.0, 600.0),
    "break_every": (1, 10_000),
    "claim_ttl_seconds": (10, 86_400),
    "min_session_items": (1, 10_000),
}


def within_bounds(apps, schema_editor):
    import json

    Study = apps.get_model("annotation", "Study")
    for name, (low, high) in BOUNDS.items():
        Study.objects.filter(**{f"{name}__gt": high}).update(**{name: high})
        Study.objects.filter(**{f"{name}__lt": low}).update(**{name: low})
    Rater = apps.get_model("annotation", "Rater")
    for rater in Rater.objects.only("platform").iterator():
        if len(json.dumps(rater.platform)) <= 4096:
            continue
        kept = {
            k: v
            for k, v in rater.platform.items()
            if isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 200
        }
        rater.platform = dict(list(kept.items())[:10])
        rater.save(update_fields=["platform"])
    for model, name, chars in [
        ("Study", "instructions", 20_000),
        ("Study", "consent_text", 20_000),
        ("Stimulus", "prompt", 4_000),
    ]:
        Model = apps.get_model("annotation", model)
        long = Model.objects.annotate(n=Length(name)).filter(n__gt=chars)
        for pk, text in long.values_list("pk", name):
            Model.objects.filter(pk=pk).update(**{name: text[:chars]})
    if schema_editor.connection.vendor == "postgresql":
        # The updates left deferred foreign-key checks pending; PostgreSQL refuses to
        # alter a table with pending trigger events, so they run now.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0009_rater_decisions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(within_bounds, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="study",
            name="study_k_positive",
        ),
        migrations.RemoveConstraint(
            model_name="study",
            name="study_session_size",
        ),
        migrations.RemoveConstraint(
            model_name="study",
            name="study_gold_rate",
        ),
        migrations.RemoveConstraint(
            model_name="study",
            name="study_min_session_items",
        ),
        migrations.AlterField(
            model_name="stimulus",
            name="prompt",
            field=models.TextField(blank=True, max_length=4000),
        ),
        migrations.AlterField(
            model_name="study",
            name="break_every",
            field=models.PositiveIntegerField(
                default=40,
                help_text="A break screen every N items.",
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(10000),
                ],
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="claim_ttl_seconds",
            field=models.PositiveIntegerField(
                default=600,
                help_text="How long a claim lives.",
                validators=[
                    django.core.validators.MinValueValidator(10),
                    django.core.validators.MaxValueValidator(86400),
                ],
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="consent_text",
            field=models.TextField(
                blank=True,
                help_text="Shown on the consent page; a default text is used when empty.",
                max_length=20000,
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="gold_fail_limit",
            field=models.PositiveSmallIntegerField(
                default=2,
                help_text="Gold failures after which a rater is excluded (F).",
                validators=[
                    django.core.validators.MinValueValidator(0),
                    django.core.validators.MaxValueValidator(100),
                ],
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="instructions",
            field=models.TextField(
                blank=True, help_text="Shown to raters before training.", max_length=20000
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="max_items_per_rater",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Cap over all sessions of one rater; empty = no cap.",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(2147483647),
                ],
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="min_session_items",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Fewest items a rater is admitted for when the study has no work left for a full session; empty = a full session only.",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(10000),
                ],
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="min_view_seconds",
            field=models.FloatField(
                default=3.0,
                validators=[
                    django.core.validators.MinValueValidator(0.0),
                    django.core.validators.MaxValueValidator(600.0),
                ],
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="ratings_per_stimulus",
            field=models.PositiveSmallIntegerField(
                default=15,
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(1000),
                ],
                verbose_name="ratings per stimulus (K)",
            ),
        ),
        migrations.AlterField(
            model_name="study",
            name="session_size",
            field=models.PositiveIntegerField(
                default=50,
                help_text="Test items per session.",
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(10000),
                ],
            ),
        ),
        migrations.AddConstraint(
            model_name="rater",
            constraint=models.CheckConstraint(
                condition=django.db.models.lookups.LessThanOrEqual(
                    django.db.models.functions.text.Length(
                        django.db.models.functions.comparison.Cast("platform", models.TextField())
                    ),
                    4096,
                ),
                name="rater_platform_bounded",
            ),
        ),
        migrations.AddConstraint(
            model_name="stimulus",
            constraint=models.CheckConstraint(
                condition=django.db.models.lookups.LessThanOrEqual(
                    django.db.models.functions.text.Length("prompt"), 4000
                ),
                name="stimulus_prompt_length",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("ratings_per_stimulus__gte", 1), ("ratings_per_stimulus__lte", 1000)
                ),
                name="study_ratings_per_stimulus_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(("session_size__gte", 1), ("session_size__lte", 10000)),
                name="study_session_size_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("max_items_per_rater__isnull", True),
                    models.Q(
                        ("max_items_per_rater__gte", 1), ("max_items_per_rater__lte", 2147483647)
                    ),
                    _connector="OR",
                ),
                name="study_max_items_per_rater_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(("gold_rate__gte", 0.0), ("gold_rate__lte", 0.5)),
                name="study_gold_rate_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(("gold_fail_limit__gte", 0), ("gold_fail_limit__lte", 100)),
                name="study_gold_fail_limit_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("min_view_seconds__gte", 0.0), ("min_view_seconds__lte", 600.0)
                ),
                name="study_min_view_seconds_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(("break_every__gte", 1), ("break_every__lte", 10000)),
                name="study_break_every_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("claim_ttl_seconds__gte", 10), ("claim_ttl_seconds__lte", 86400)
                ),
                name="study_claim_ttl_seconds_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("min_session_items__isnull", True),
                    models.Q(("min_session_items__gte", 1), ("min_session_items__lte", 10000)),
                    _connector="OR",
                ),
                name="study_min_session_items_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=django.db.models.lookups.LessThanOrEqual(
                    django.db.models.functions.text.Length("instructions"), 20000
                ),
                name="study_instructions_length",
            ),
        ),
        migrations.AddConstraint(
            model_name="study",
            constraint=models.CheckConstraint(
                condition=django.db.models.lookups.LessThanOrEqual(
                    django.db.models.functions.text.Length("consent_text"), 20000
                ),
                name="study_consent_text_length",
            ),
        ),
    ]
