"""The rating tally leaves pilot ratings out (a researcher's preview counts toward
nothing, annotation.pilot).

The triggers of 0002 are replaced: they count a rating when ``repetition = 1 AND
NOT is_pilot``, and follow updates of ``is_pilot`` as they follow updates of the
stimulus and the repetition. The tally is then recounted under that rule (pilot
ratings written between 0004 and this migration were counted). Reversing restores
0002's triggers and its count.

It also indexes the pilot raters' ids (a partial index, a handful of rows): the
counts toward K leave pilots' claims out with ``NOT IN (SELECT id FROM rater WHERE
source = 'pilot')`` (annotation.statements), read from this index once per statement.
"""

import importlib

from django.db import migrations, models

TALLY = "annotation_stimulustally"
RATING = "annotation_rating"
# A rating the tally counts: a first rating, not a pilot one.
COUNTED = "{row}.repetition = 1 AND NOT {row}.is_pilot"


def counted(row: str) -> str:
    return COUNTED.format(row=row)


POSTGRES_UP = f"""
CREATE OR REPLACE FUNCTION annotation_rating_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        IF {counted("OLD")} THEN
            UPDATE {TALLY} SET ratings = ratings - 1 WHERE stimulus_id = OLD.stimulus_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF {counted("NEW")} THEN
            INSERT INTO {TALLY} (stimulus_id, ratings) VALUES (NEW.stimulus_id, 1)
            ON CONFLICT (stimulus_id) DO UPDATE SET ratings = {TALLY}.ratings + 1;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS annotation_rating_tally ON {RATING};
CREATE TRIGGER annotation_rating_tally
    AFTER INSERT OR DELETE OR UPDATE OF stimulus_id, repetition, is_pilot ON {RATING}
    FOR EACH ROW EXECUTE FUNCTION annotation_rating_tally();
"""

SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS annotation_rating_tally_{event}"
    for event in ("insert", "delete", "update")
]
SQLITE_UP = [
    *SQLITE_DROP,
    f"""CREATE TRIGGER annotation_rating_tally_insert AFTER INSERT ON {RATING}
    WHEN {counted("NEW")} BEGIN
        INSERT INTO {TALLY} (stimulus_id, ratings) VALUES (NEW.stimulus_id, 1)
        ON CONFLICT (stimulus_id) DO UPDATE SET ratings = ratings + 1;
    END""",
    f"""CREATE TRIGGER annotation_rating_tally_delete AFTER DELETE ON {RATING}
    WHEN {counted("OLD")} BEGIN
        UPDATE {TALLY} SET ratings = ratings - 1 WHERE stimulus_id = OLD.stimulus_id;
    END""",
    f"""CREATE TRIGGER annotation_rating_tally_update
    AFTER UPDATE OF stimulus_id, repetition, is_pilot ON {RATING} BEGIN
        UPDATE {TALLY} SET ratings = ratings - 1
            WHERE stimulus_id = OLD.stimulus_id AND {counted("OLD")};
        INSERT INTO {TALLY} (stimulus_id, ratings)
            SELECT NEW.stimulus_id, 1 WHERE {counted("NEW")}
        ON CONFLICT (stimulus_id) DO UPDATE SET ratings = ratings + 1;
    END""",
]


def recount(where: str) -> list[str]:
    """The whole tally counted again from the ratings that ``where`` counts."""
    return [
        f"DELETE FROM {TALLY}",
        f"INSERT INTO {TALLY} (stimulus_id, ratings)"
        f" SELECT stimulus_id, COUNT(*) FROM {RATING} WHERE {where} GROUP BY stimulus_id",
    ]


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
    _run(schema_editor, recount("repetition = 1 AND NOT is_pilot"))


def triggers_down(apps, schema_editor):
    # 0002's triggers as they were (its module name starts with a digit).
    before = importlib.import_module("annotation.migrations.0002_stimulus_tally")
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [before.POSTGRES_DOWN, before.POSTGRES_UP])
    else:
        _run(schema_editor, [*before.SQLITE_DOWN, *before.SQLITE_UP])
    _run(schema_editor, recount("repetition = 1"))


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0004_sharing_pilot_imports"),
    ]

    operations = [
        # First: on SQLite this rebuilds the rating table, which drops its triggers.
        migrations.AlterField(
            model_name="rating",
            name="is_pilot",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunPython(triggers_up, triggers_down),
        # The few pilot raters, read once per claim query to leave their claims out of
        # the counts toward K (annotation.statements); declared on Rater.Meta.
        migrations.AddIndex(
            model_name="rater",
            index=models.Index(
                condition=models.Q(source="pilot"), fields=["id"], name="annotation_rater_pilot_ids"
            ),
        ),
    ]
