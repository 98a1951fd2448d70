# A database check on ScoringJob.batch_size (1..1024, what the API and the service take).

from django.conf import settings
from django.db import migrations, models
from django.db.models.functions import Greatest, Least


def clamp_batch_sizes(apps, schema_editor):
    """Rows written before the check (the admin took any positive integer) are brought
    within it."""
    ScoringJob = apps.get_model("scoring", "ScoringJob")
    outside = ScoringJob.objects.filter(models.Q(batch_size__lt=1) | models.Q(batch_size__gt=1024))
    if outside.update(batch_size=Least(Greatest("batch_size", 1), 1024)):
        if schema_editor.connection.vendor == "postgresql":
            # The update leaves deferred foreign-key checks pending; PostgreSQL refuses
            # to alter a table with pending trigger events.
            schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0012_viewing_conditions"),
        ("scoring", "0005_job_layer"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(clamp_batch_sizes, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="scoringjob",
            constraint=models.CheckConstraint(
                condition=models.Q(("batch_size__gte", 1), ("batch_size__lte", 1024)),
                name="scoring_job_batch_size",
            ),
        ),
    ]
