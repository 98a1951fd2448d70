"""The end of a rater's break, kept on their session (rater_flow.next_step)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0007_study_places_outcomes"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="break_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
