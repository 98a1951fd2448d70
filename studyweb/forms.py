"""What every page form of the app shares."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

from studyweb.boundary import has_control_characters


@deconstructible
class NoControlCharacters:
    """Refuses NUL and the other control characters (a multi-line text may hold tab,
    newline and carriage return). Django's own check stops NUL only; PostgreSQL would
    store the rest and every export would carry them."""

    def __init__(self, *, multiline: bool):
        self.multiline = multiline

    def __call__(self, value) -> None:
        # NUL is left to the ProhibitNullCharactersValidator every forms.CharField has:
        # one message a problem, not two.
        if isinstance(value, str) and has_control_characters(
            value.replace("\x00", ""), free_text=self.multiline
        ):
            raise ValidationError(
                "Remove the control characters (invisible characters such as NUL or "
                "escape) from this text.",
                code="control_character",
            )

    def __eq__(self, other) -> bool:
        return isinstance(other, NoControlCharacters) and other.multiline == self.multiline


class PlainTextForm(forms.Form):
    """A page form whose text fields refuse control characters, each with a message on
    the field (the API's parsers refuse them the same way: ``studyweb.boundary``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plain_text_fields(self)


class PlainTextModelForm(forms.ModelForm):
    """``PlainTextForm`` for model forms."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plain_text_fields(self)


def plain_text_fields(form: forms.BaseForm) -> None:
    for field in form.fields.values():
        if isinstance(field, forms.CharField):
            multiline = isinstance(field.widget, forms.Textarea)
            field.validators.append(NoControlCharacters(multiline=multiline))
