"""Masked forms of sensitive values (CONTRACT.md: ID ``370102********1234``, phone
``138****5678``, name ``张*``). Masks keep what a clerk needs to recognise a record on the phone
(region and last digits, family name) and nothing that identifies the person alone."""

from __future__ import annotations

from collections.abc import Callable


def mask_id_number(value: str) -> str:
    if len(value) < 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_phone(value: str) -> str:
    if len(value) < 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_name(value: str) -> str:
    if not value:
        return value
    return value[0] + "*" * max(1, len(value) - 1)


def mask_address(value: str) -> str:
    """Keep the administrative part up to the county (区/县/市 after the first 6 characters)."""
    for index, char in enumerate(value):
        if index >= 5 and char in "区县旗":
            return value[: index + 1] + "****"
    return value[:6] + "****"


MASKS: dict[str, Callable[[str], str]] = {
    "Person.idNumber": mask_id_number,
    "Person.phone": mask_phone,
    "Person.name": mask_name,
    "Person.address": mask_address,
}
