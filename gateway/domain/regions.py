"""The GB/T 2260 region codes the gateway ships with: provinces, cities and counties it serves.

Region codes nest (2 digits province, 4 city, 6 county; DOMAIN.md) and decide jurisdiction, so
synthetic data and demos must use real codes. ``data/regions.json`` holds a curated subset of
current county-level codes for Shandong (37), Shanxi (14) and Anhui (34), the three provinces
whose notices the gateway implements. It is not a national table: ID numbers are checked against
all province codes in :mod:`gateway.domain.id_numbers`, not against this file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

__all__ = [
    "County",
    "Province",
    "all_counties",
    "county",
    "is_known_province",
    "provinces",
]


@dataclass(frozen=True, slots=True)
class County:
    """A county-level unit (县、县级市、市辖区) with the city and province it belongs to."""

    code: str  # 6 digits
    name: str
    city_code: str  # 4 digits
    city_name: str
    province_code: str  # 2 digits
    province_name: str


@dataclass(frozen=True, slots=True)
class Province:
    code: str  # 2 digits
    name: str
    key: str  # the RELIEF_PROVINCE spelling: shandong, shanxi, anhui


@cache
def _load() -> tuple[tuple[Province, ...], tuple[County, ...]]:
    text = resources.files("gateway").joinpath("data/regions.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    found_provinces: list[Province] = []
    found_counties: list[County] = []
    for province in data["provinces"]:
        found_provinces.append(Province(province["code"], province["name"], province["key"]))
        for city in province["cities"]:
            for item in city["counties"]:
                found_counties.append(
                    County(
                        code=item["code"],
                        name=item["name"],
                        city_code=city["code"],
                        city_name=city["name"],
                        province_code=province["code"],
                        province_name=province["name"],
                    )
                )
    return tuple(found_provinces), tuple(found_counties)


@cache
def _counties_by_code() -> dict[str, County]:
    return {item.code: item for item in _load()[1]}


def provinces() -> list[Province]:
    """The provinces in the file, in file order."""
    return list(_load()[0])


def all_counties() -> list[County]:
    """Every county in the file, in file order (a fresh list; the records are immutable)."""
    return list(_load()[1])


def county(code: str) -> County | None:
    """The county with this 6-digit code, or ``None`` if the file does not list it."""
    return _counties_by_code().get(code)


def is_known_province(code2: str) -> bool:
    """Whether ``code2`` is one of the provinces the file covers (37, 14, 34)."""
    return any(item.code == code2 for item in _load()[0])


def narrowest_jurisdiction(county_codes: Iterable[str]) -> str:
    """The smallest jurisdiction (6-digit county, 4-digit city or 2-digit province code) that
    holds every county given; "" when they span provinces or none are given.

    >>> narrowest_jurisdiction(["370102", "370103"])
    '3701'
    """
    codes = {code[:6] for code in county_codes}
    if not codes:
        return ""
    first = min(codes)
    for digits in (6, 4, 2):
        if all(code[:digits] == first[:digits] for code in codes):
            return first[:digits]
    return ""
