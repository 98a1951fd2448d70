"""The languages raters may read a study in, with Django's codes (settings.LANGUAGES,
Study.language). Plain data: the settings module imports it."""

LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
