"""StimulusTally: ratings (repetition 1) per stimulus, counted by triggers on Rating.

The triggers are the only writers of the tally (see StimulusTally): every insert,
delete, and update of a rating's stimulus or repetition adjusts it, inside the
same transaction. PostgreSQL runs one PL/pgSQL function; SQLite (the embedded
``make run``) three plain triggers. Existing ratings are counted once here.
"""

import django.db.models.deletion
from django.db import migrations, models

TALLY = "annotation_stimulustally"
RATING = "annotation_rating"

POSTGRES_UP = f"""
CREATE FUNCTION annotation_rating_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF OLD.repetition = 1 THEN
            UPDATE {TALLY} SET ratings = ratings - 1 WHERE stimulus_id = OLD.stimulus_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.repetition = 1 THEN
            INSERT INTO {TALLY} (stimulus_id, ratings) VALUES (NEW.stimulus_id, 1)
            ON CONFLICT (stimulus_id) DO UPDATE SET ratings = {TALLY}.ratings + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER annotation_rating_tally
    AFTER INSERT OR DELETE OR UPDATE OF stimulus_id, repetition ON {RATING}
    FOR EACH ROW EXECUTE FUNCTION annotation_rating_tally();
"""
POSTGRES_DOWN = f"""
DROP TRIGGER IF EXISTS annotation_rating_tally ON {RATING};
DROP FUNCTION IF EXISTS annotation_rating_tally();
"""

SQLITE_UP = [
    f"""CREATE TRIGGER annotation_rating_tally_insert AFTER INSERT ON {RATING}
    WHEN NEW.repetition = 1 BEGIN
        INSERT INTO {TALLY} (stimulus_id, ratings) VALUES (NEW.stimulus_id, 1)
        ON CONFLICT (stimulus_id) DO UPDATE SET ratings = ratings + 1;
    END""",
    f"""CREATE TRIGGER annotation_rating_tally_delete AFTER DELETE ON {RATING}
    WHEN OLD.repetition = 1 BEGIN
        UPDATE {TALLY} SET ratings = ratings - 1 WHERE stimulus_id = OLD.stimulus_id;
    END""",
    f"""CREATE TRIGGER annotation_rating_tally_update
    AFTER UPDATE OF stimulus_id, repetition ON {RATING} BEGIN
        UPDATE {TALLY} SET ratings = ratings - 1
            WHERE stimulus_id = OLD.stimulus_id AND OLD.repetition = 1;
        INSERT INTO {TALLY} (stimulus_id, ratings)
            SELECT NEW.stimulus_id, 1 WHERE NEW.repetition = 1
        ON CONFLICT (stimulus_id) DO UPDATE SET ratings = ratings + 1;
    END""",
]
SQLITE_DOWN = [
    f"DROP TRIGGER IF EXISTS annotation_rating_tally_{event}"
    for event in ("insert", "delete", "update")
]

BACKFILL = f"""
INSERT INTO {TALLY} (stimulus_id, ratings)
SELECT stimulus_id, COUNT(*) FROM {RATING} WHERE repetition = 1 GROUP BY stimulus_id
"""


def _run(schema_editor, statements):
    for sql in statements:
        schema_editor.execute(sql, params=None)


def triggers_up(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [POSTGRES_UP])
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_UP)
    else:
        raise NotImplementedError(f"no rating-tally triggers for {vendor}")
    _run(schema_editor, [BACKFILL])


def triggers_down(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    _run(schema_editor, [POSTGRES_DOWN] if vendor == "postgresql" else SQLITE_DOWN)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="StimulusTally",
            fields=[
                (
                    "stimulus",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="tally",
                        serialize=False,
                        to="annotation.stimulus",
                    ),
                ),
                ("ratings", models.PositiveIntegerField(default=0)),
            ],
            options={
                "verbose_name_plural": "stimulus tallies",
            },
        ),
        migrations.RunPython(triggers_up, triggers_down),
    ]
