import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger("studyweb")


class ScoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "scoring"
    verbose_name = "Scoring: MOS, models, agreement"

    def ready(self) -> None:
        if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False) and not settings.CELERY_BROKER_URL:
            # The embedded default of `make run`: fine for a first look, not for a study.
            logger.warning(
                "CELERY_BROKER_URL is not set: Celery tasks run eagerly in the web process"
            )
