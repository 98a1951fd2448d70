"""Rebuild the per-stimulus rating tally from the ratings themselves.

The triggers of migration 0002 keep StimulusTally exact on every insert, delete and
update of a rating. Loading data past them can leave it wrong: a data-only
restore into a database that has the triggers (each restored rating counts once
more on top of the restored tally), or ``loaddata`` of a dump with both tables.
This recounts everything in one transaction and says what it changed.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import connection, transaction

from annotation.models import Rating, StimulusTally


def recount_tallies() -> int:
    """Recount every stimulus's ratings (repetition 1, not pilot: the rule of the
    triggers, migration 0005); returns how many tallies changed."""
    tally, rating = StimulusTally._meta.db_table, Rating._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        before = dict(StimulusTally.objects.values_list("stimulus_id", "ratings"))
        cursor.execute(f"DELETE FROM {tally}")
        cursor.execute(
            f"INSERT INTO {tally} (stimulus_id, ratings) SELECT stimulus_id, COUNT(*)"
            f" FROM {rating} WHERE repetition = 1 AND NOT is_pilot GROUP BY stimulus_id"
        )
        after = dict(StimulusTally.objects.values_list("stimulus_id", "ratings"))
    keys = set(before) | set(after)
    return sum(1 for k in keys if before.get(k, 0) != after.get(k, 0))


class Command(BaseCommand):
    help = "Rebuild the per-stimulus rating tally (StimulusTally) from the ratings."

    def handle(self, *args, **options):
        changed = recount_tallies()
        total = StimulusTally.objects.count()
        self.stdout.write(f"rating tallies: {total} stimuli counted, {changed} corrected")
