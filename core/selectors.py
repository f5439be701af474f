"""Reads of the core."""

from core.models import DeadLetter


def dead_letters_open_count() -> int:
    return DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).count()
