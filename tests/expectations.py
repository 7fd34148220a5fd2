"""An independent statement of who may see what, and a checker for GraphQL responses.

Nothing here reads the policy file or imports ``authz``: the access-control tests state the
rules of CONTRACT.md ("Access-control semantics") and of the default data-sharing lists a
second time, in plain Python, and compare the gateway's answers with what these rules compute
from the seeded plaintext (``Harness.bundles``).

* ``FIELD_EFFECTS`` / ``ROW_RULES``: the default policies, written out per department; each
  row rule names the places that bring a person into the caller's jurisdiction (issue 14,
  docs/access-control.md "Places"), and ``PLACE_FIELDS`` what a person seen only through an
  identity or insured place shows ("Fields follow the place").
* ``World``: the seeded plaintext indexed for lookups; each person's places derived from the
  records as ``gateway.storage.places`` defines them (``places``), ``visible`` and
  ``scope(subject)``, and the per-person field effect ``effect(subject, person, field)``.
* ``Sel`` and ``render``: a selection tree and its GraphQL text (aliases, inline fragments and
  named fragments), so one tree drives both the query and the check of its response.
* ``Checker``: walks a response along the tree and asserts each value is the plaintext, its
  mask, or ``null`` with a ``FORBIDDEN`` error at exactly that path, person by person (a field
  narrowed away by the place is denied); then that the errors are exactly the expected ones
  and that no plaintext the caller may not read appears anywhere.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from gateway.domain.records import (
    CostBurdenRecord,
    EnrollmentRecord,
    HouseholdBundle,
    PersonRecord,
    ReliefStatusRecord,
)

READ = "read"
MASK = "mask"
DENY = "deny"

DEPARTMENTS = (
    "medical_insurance",
    "civil_affairs",
    "rural_revitalization",
    "health",
    "public_security",
    "disabled_federation",
    "human_resources",
    "big_data",
)
LEVELS = ("province", "city", "county")
LEVEL_DIGITS = {"province": 2, "city": 4, "county": 6}

CATEGORIES = (
    "EXTREME_POVERTY",
    "MINIMUM_LIVING",
    "MINIMUM_LIVING_EDGE",
    "RIGID_EXPENDITURE",
    "SERIOUS_ILLNESS",
    "RETURNED_TO_POVERTY",
    "MONITORED_UNSTABLE",
    "MONITORED_MARGINAL",
    "MONITORED_SUDDEN_HARDSHIP",
    "LIFTED_FROM_POVERTY",
    "ORPHAN",
    "UNSUPPORTED_CHILD",
    "SEVERE_DISABILITY",
)
RURAL_CATEGORIES = frozenset(
    {
        "RETURNED_TO_POVERTY",
        "MONITORED_UNSTABLE",
        "MONITORED_MARGINAL",
        "MONITORED_SUDDEN_HARDSHIP",
        "LIFTED_FROM_POVERTY",
    }
)

# Every guarded field of the contract's core types (the ones a policy line can grant).
PERSON_GUARDED = (
    "idNumber", "name", "gender", "birthDate", "phone", "address",
    "household", "reliefStatuses", "enrollments", "costBurdens",
)  # fmt: skip
RELIEF_GUARDED = ("sourceDepartment", "recognizedOn", "validFrom", "validTo")
ENROLLMENT_GUARDED = ("insuranceType", "status", "regionCode", "subsidyCategory", "subsidyAmount")
COST_GUARDED = (
    "totalCost", "basicInsurancePaid", "criticalIllnessPaid",
    "medicalAssistancePaid", "personalBurden", "inpatientCount",
)  # fmt: skip
ALL_GUARDED: tuple[str, ...] = (
    *(f"Person.{f}" for f in PERSON_GUARDED),
    "Household.members",
    *(f"ReliefStatus.{f}" for f in RELIEF_GUARDED),
    *(f"Enrollment.{f}" for f in ENROLLMENT_GUARDED),
    *(f"CostBurden.{f}" for f in COST_GUARDED),
)

# Readable whenever the row is: identity of the row and keys of child records.
ALWAYS_READABLE = frozenset(
    {
        "Person.id",
        "Person.regionCode",
        "Household.id",
        "ReliefStatus.category",
        "Enrollment.year",
        "CostBurden.year",
    }
)

_CIVIL_AFFAIRS_FIELDS: dict[str, str] = {
    "Person.idNumber": READ,
    "Person.name": READ,
    "Person.gender": READ,
    "Person.birthDate": READ,
    "Person.address": READ,
    "Person.phone": MASK,
    "Person.household": READ,
    "Household.members": READ,
    "Person.reliefStatuses": READ,
    "ReliefStatus.sourceDepartment": READ,
    "ReliefStatus.recognizedOn": READ,
    "ReliefStatus.validFrom": READ,
    "ReliefStatus.validTo": READ,
    "Person.enrollments": READ,
    "Enrollment.insuranceType": READ,
    "Enrollment.status": READ,
    "Person.costBurdens": READ,
    "CostBurden.totalCost": READ,
    "CostBurden.personalBurden": READ,
    "CostBurden.inpatientCount": READ,
}

# The default data-sharing lists, department by department (same for every level).
# A field not named for a department is denied.
FIELD_EFFECTS: dict[str, dict[str, str]] = {
    "medical_insurance": dict.fromkeys(ALL_GUARDED, READ),
    "civil_affairs": dict(_CIVIL_AFFAIRS_FIELDS),
    "rural_revitalization": dict(_CIVIL_AFFAIRS_FIELDS),
    "health": {
        "Person.idNumber": READ,
        "Person.name": READ,
        "Person.gender": READ,
        "Person.birthDate": READ,
        "Person.enrollments": READ,
        "Enrollment.insuranceType": READ,
        "Enrollment.status": READ,
    },
    "public_security": {},
    "disabled_federation": {},
    "human_resources": {},
    "big_data": {},
}

# The kinds of place (gateway/domain/places.py), in the order policies write them.
RESIDENCE, IDENTITY, INSURED, ADDRESSED = "residence", "identity", "insured", "addressed"
PLACE_KINDS = (RESIDENCE, IDENTITY, INSURED, ADDRESSED)
ALL_ROWS = "all"
PUSHED = "pushed"


@dataclass(frozen=True)
class RowRule:
    """One row scope of a department's list: who (everyone, people holding one of some relief
    categories today, people with a task pushed to the department) and through which places
    they count as in the caller's jurisdiction (no places written: the residence)."""

    who: str | frozenset[str]  # ALL_ROWS, PUSHED, or the categories
    places: frozenset[str] = frozenset({RESIDENCE})

    def __str__(self) -> str:
        """As ``me.rowScope`` prints it: ``all; places: residence|insured``."""
        if self.who == ALL_ROWS or self.who == PUSHED:
            text = str(self.who)
        else:
            assert isinstance(self.who, frozenset)
            text = "category: " + "|".join(sorted(self.who))
        if self.places != {RESIDENCE}:
            text += "; places: " + "|".join(k for k in PLACE_KINDS if k in self.places)
        return text


def _rule(who: str | frozenset[str], *places: str) -> RowRule:
    return RowRule(who, frozenset(places or (RESIDENCE,)))


# Row scopes inside the jurisdiction, per department (none: nobody). Medical insurance sees
# everyone living or insured in its region; civil affairs everyone living or recognised there,
# and the people pushed to it; rural revitalisation holders of its categories living or
# recognised there, and the people pushed to it; health the residents (DOMAIN.md rule 9).
ROW_RULES: dict[str, tuple[RowRule, ...]] = {
    "medical_insurance": (_rule(ALL_ROWS, RESIDENCE, INSURED),),
    "civil_affairs": (_rule(ALL_ROWS, RESIDENCE, IDENTITY), _rule(PUSHED, ADDRESSED)),
    "health": (_rule(ALL_ROWS),),
    "rural_revitalization": (
        _rule(RURAL_CATEGORIES, RESIDENCE, IDENTITY),
        _rule(PUSHED, ADDRESSED),
    ),
    "public_security": (),
    "disabled_federation": (),
    "human_resources": (),
    "big_data": (),
}

# Fields follow the place: a person seen only through an identity or insured place (not
# living in the caller's region, not pushed to its department) shows the fields of that
# relation, always within the department's own list; never phone, address or household.
_IDENTIFICATION = frozenset({"Person.idNumber", "Person.name", "Person.gender", "Person.birthDate"})
_RELIEF = frozenset({"Person.reliefStatuses", *(f"ReliefStatus.{f}" for f in RELIEF_GUARDED)})
_COSTS = frozenset({"Person.costBurdens", *(f"CostBurden.{f}" for f in COST_GUARDED)})
PLACE_FIELDS: dict[str, frozenset[str]] = {
    # 参保地: the enrollments in full (it pays basic and critical-illness benefits)
    INSURED: _IDENTIFICATION
    | _RELIEF
    | _COSTS
    | {"Person.enrollments", *(f"Enrollment.{f}" for f in ENROLLMENT_GUARDED)},
    # 认定地: whether (type, status), not where, the person is insured
    IDENTITY: _IDENTIFICATION
    | _RELIEF
    | _COSTS
    | {"Person.enrollments", "Enrollment.insuranceType", "Enrollment.status"},
}


@dataclass(frozen=True)
class Subject:
    dept: str
    level: str
    region: str

    def effect(self, field_name: str) -> str:
        if field_name in ALWAYS_READABLE:
            return READ
        return FIELD_EFFECTS[self.dept].get(field_name, DENY)

    def reads(self, field_name: str) -> bool:
        return self.effect(field_name) == READ

    def __str__(self) -> str:
        return f"{self.dept}:{self.level}:{self.region}"


# ---------------------------------------------------------------------------- masks
def mask_id_number(value: str) -> str:
    return value[:6] + "*" * 8 + value[-4:]


def mask_phone(value: str) -> str:
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_name(value: str) -> str:
    return value[0] + "*" * (len(value) - 1)


MASKS: dict[str, Callable[[str], str]] = {
    "Person.idNumber": mask_id_number,
    "Person.phone": mask_phone,
    "Person.name": mask_name,
}


# ---------------------------------------------------------------------------- the world
def holds_on(status: ReliefStatusRecord, day: date) -> bool:
    return status.valid_from <= day and (status.valid_to is None or status.valid_to >= day)


TERMINATED = "TERMINATED"


@dataclass(frozen=True)
class Place:
    """A place other than the residence that ties a person to a county (issue 14), with the
    department it belongs to (identity: the recognising one; insured: medical insurance;
    addressed: the one pushed to) and its period, ``until`` being the last day held."""

    kind: str
    department: str
    county: str
    since: date
    until: date | None

    def held_on(self, day: date) -> bool:
        return self.since <= day and (self.until is None or self.until >= day)


@dataclass(frozen=True)
class Push:
    """A task pushed to ``department`` in ``county`` about a person (a warning to review)."""

    person_id: uuid.UUID
    department: str
    county: str
    opened_on: date


def derive_places(
    person: PersonRecord,
    statuses: Iterable[ReliefStatusRecord],
    enrollments: Iterable[EnrollmentRecord],
    pushes: Iterable[Push],
    recognised_in: Mapping[ReliefStatusRecord, str],
) -> list[Place]:
    """The person's places from the records, as docs/access-control.md and
    ``gateway/storage/places.py`` define them:

    * identity, per recognising department and county of the list row (the person's own
      county when none is recorded: the seed writer's synthetic lists): from the earliest
      ``valid_from``; ends on the latest ``valid_to`` once every identity there has exited;
    * insured, per county of the enrollment: from 1 January of the first year there; held
      while the person's latest enrollment year has a live (not terminated) enrollment
      there, else ends on 31 December of the last live year there (terminated only: never);
    * addressed, per department and county pushed to: from the first push, for good.
    """
    places: list[Place] = []
    by_identity: dict[tuple[str, str], list[ReliefStatusRecord]] = defaultdict(list)
    for status in statuses:
        county = recognised_in.get(status, person.region_code[:6])
        by_identity[(status.source_department, county)].append(status)
    for (department, county), held in by_identity.items():
        ends = [s.valid_to for s in held]
        until = None if any(end is None for end in ends) else max(e for e in ends if e)
        since = min(s.valid_from for s in held)
        places.append(Place(IDENTITY, department, county, since, until))
    enrolled = list(enrollments)
    if enrolled:
        latest = max(e.year for e in enrolled)
        by_county: dict[str, list[EnrollmentRecord]] = defaultdict(list)
        for enrollment in enrolled:
            by_county[enrollment.region_code[:6]].append(enrollment)
        for county, there in by_county.items():
            first = min(e.year for e in there)
            live = [e.year for e in there if e.status != TERMINATED]
            since = date(first, 1, 1)
            if live and max(live) >= latest:
                until = None
            elif live:
                until = date(max(live), 12, 31)
            else:
                until = since - timedelta(days=1)  # terminated only: never held
            places.append(Place(INSURED, "medical_insurance", county, since, until))
    first_push: dict[tuple[str, str], date] = {}
    for push in pushes:
        key = (push.department, push.county)
        first_push[key] = min(first_push.get(key, push.opened_on), push.opened_on)
    for (department, county), since in first_push.items():
        places.append(Place(ADDRESSED, department, county, since, None))
    return places


class World:
    """The seeded plaintext, indexed; the scope computation of the contract.

    ``recognised_in`` names the county of the list row that reported a relief status when it
    is not the person's own county (the seed writer records the residence); ``pushes`` are the
    tasks pushed to departments (the seeded world has none).
    """

    def __init__(
        self,
        bundles: Iterable[HouseholdBundle],
        today: date,
        *,
        recognised_in: Mapping[ReliefStatusRecord, str] | None = None,
        pushes: Iterable[Push] = (),
    ) -> None:
        self.today = today
        self.persons: dict[uuid.UUID, PersonRecord] = {}
        self.by_id_number: dict[str, PersonRecord] = {}
        self.statuses: dict[uuid.UUID, list[ReliefStatusRecord]] = defaultdict(list)
        self.enrollments: dict[uuid.UUID, list[EnrollmentRecord]] = defaultdict(list)
        self.costs: dict[uuid.UUID, list[CostBurdenRecord]] = defaultdict(list)
        self.households: dict[uuid.UUID, list[PersonRecord]] = defaultdict(list)
        self.pushes: dict[uuid.UUID, list[Push]] = defaultdict(list)
        for bundle in bundles:
            for person in bundle.members:
                self.persons[person.person_id] = person
                self.by_id_number[person.id_number] = person
                if person.household_id is not None:
                    self.households[person.household_id].append(person)
            for status in bundle.relief_statuses:
                self.statuses[status.person_id].append(status)
            for enrollment in bundle.enrollments:
                self.enrollments[enrollment.person_id].append(enrollment)
            for cost in bundle.cost_burdens:
                self.costs[cost.person_id].append(cost)
        for push in pushes:
            self.pushes[push.person_id].append(push)
        recognised = dict(recognised_in or {})
        self.places: dict[uuid.UUID, list[Place]] = {
            pid: derive_places(
                person,
                self.statuses[pid],
                self.enrollments[pid],
                self.pushes[pid],
                recognised,
            )
            for pid, person in self.persons.items()
        }
        self._scopes: dict[Subject, frozenset[uuid.UUID]] = {}
        self._narrowed: dict[tuple[Subject, uuid.UUID], frozenset[str] | None] = {}
        self._narrowable: dict[Subject, frozenset[str]] = {}

    # -- regions
    def counties(self) -> list[str]:
        return sorted({p.region_code[:6] for p in self.persons.values()})

    def cities(self) -> list[str]:
        return sorted({p.region_code[:4] for p in self.persons.values()})

    def provinces(self) -> list[str]:
        return sorted({p.region_code[:2] for p in self.persons.values()})

    def regions(self, level: str) -> list[str]:
        """Codes of ``level`` where someone lives or holds a place (held or not)."""
        digits = LEVEL_DIGITS[level]
        counties = {p.region_code[:6] for p in self.persons.values()}
        counties |= {place.county for places in self.places.values() for place in places}
        return sorted({county[:digits] for county in counties})

    # -- scope
    def holds(self, person: PersonRecord, categories: Iterable[str] | None, day: date) -> bool:
        wanted = None if categories is None else frozenset(categories)
        return any(
            holds_on(s, day) and (wanted is None or s.category in wanted)
            for s in self.statuses[person.person_id]
        )

    def rural_county(self) -> str:
        """A county that shows off the rural-revitalisation row rule best: households split by
        it (some members hold one of its categories today, others do not), people whose rural
        status has ended, people holding only other categories; then the most visible people."""
        score: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for person in self.persons.values():
            county = person.region_code[:6]
            visible = self.holds(person, RURAL_CATEGORIES, self.today)
            score[county][3] += visible
            if not visible and any(
                s.category in RURAL_CATEGORIES for s in self.statuses[person.person_id]
            ):
                score[county][1] = 1
            if not visible and self.holds(person, None, self.today):
                score[county][2] = 1
        for members in self.households.values():
            held = [self.holds(m, RURAL_CATEGORIES, self.today) for m in members]
            if any(held) and not all(held):
                score[members[0].region_code[:6]][0] = 1
        return max(sorted(score), key=lambda county: (*score[county][:3], score[county][3]))

    def split_households(self, subject: Subject) -> list[uuid.UUID]:
        """Households with members both inside and outside the subject's scope."""
        scope = self.scope(subject)
        return sorted(
            hid
            for hid, members in self.households.items()
            if any(m.person_id in scope for m in members)
            and not all(m.person_id in scope for m in members)
            and any(m.region_code.startswith(subject.region) for m in members)
        )

    def ties(self, subject: Subject, person: PersonRecord) -> frozenset[str]:
        """The kinds of place that tie ``person`` to the subject's region today: the residence,
        and every place held today in the region. A push counts only when addressed to the
        subject's own department, an identity place only when the subject's own department
        recognised the identity there (docs/access-control.md)."""
        kinds = set()
        if person.region_code.startswith(subject.region):
            kinds.add(RESIDENCE)
        for place in self.places[person.person_id]:
            if (
                place.held_on(self.today)
                and place.county.startswith(subject.region)
                and (place.kind not in (ADDRESSED, IDENTITY) or place.department == subject.dept)
            ):
                kinds.add(place.kind)
        return frozenset(kinds)

    def admits(self, rule: RowRule, subject: Subject, person: PersonRecord) -> bool:
        """Whether ``person`` is one of the people ``rule`` names (places aside)."""
        if rule.who == ALL_ROWS:
            return True
        if rule.who == PUSHED:
            return any(p.department == subject.dept for p in self.pushes[person.person_id])
        assert isinstance(rule.who, frozenset)
        return self.holds(person, rule.who, self.today)

    def visible(self, subject: Subject, person: PersonRecord) -> bool:
        """Some row rule of the subject names the person and one of its places ties the
        person to the subject's region."""
        ties = self.ties(subject, person)
        return any(
            rule.places & ties and self.admits(rule, subject, person)
            for rule in ROW_RULES[subject.dept]
        )

    def scope(self, subject: Subject) -> frozenset[uuid.UUID]:
        if subject not in self._scopes:
            self._scopes[subject] = frozenset(
                pid for pid, p in self.persons.items() if self.visible(subject, p)
            )
        return self._scopes[subject]

    # -- fields follow the place
    def narrowed_to(self, subject: Subject, person: PersonRecord) -> frozenset[str] | None:
        """The fields a person seen only through identity or insured places shows (before the
        department's own list), or None when the subject sees the person whole: living in
        its region, or with a push addressed to its department there."""
        key = (subject, person.person_id)
        if key not in self._narrowed:
            self._narrowed[key] = self._narrowing(subject, person)
        return self._narrowed[key]

    def _narrowing(self, subject: Subject, person: PersonRecord) -> frozenset[str] | None:
        named = frozenset().union(*(rule.places for rule in ROW_RULES[subject.dept]))
        if not named & frozenset(PLACE_FIELDS):
            return None  # residence (and pushes) only: everyone seen is seen whole
        if person.region_code.startswith(subject.region):
            return None
        through = self.ties(subject, person) & named
        if ADDRESSED in through:  # pushed to the department there (when its scopes count pushes)
            return None
        allowed: frozenset[str] = frozenset()
        for kind in through:
            allowed |= PLACE_FIELDS.get(kind, frozenset())
        return allowed

    def narrowed(self, subject: Subject) -> set[uuid.UUID]:
        """The people in the subject's scope it sees only through identity/insured places."""
        return {
            pid
            for pid in self.scope(subject)
            if self.narrowed_to(subject, self.persons[pid]) is not None
        }

    def effect(self, subject: Subject, person: PersonRecord, field_name: str) -> str:
        """The subject's effect on ``field_name`` of this person's record: the department's
        list, narrowed to the place's fields for a person seen only through such a place."""
        effect = subject.effect(field_name)
        if effect == DENY or field_name in ALWAYS_READABLE:
            return effect
        allowed = self.narrowed_to(subject, person)
        if allowed is not None and field_name not in allowed:
            return DENY
        return effect

    def reads(self, subject: Subject, person: PersonRecord, field_name: str) -> bool:
        return self.effect(subject, person, field_name) == READ

    def narrowable(self, subject: Subject) -> frozenset[str]:
        """Fields the subject's list grants that some person in its scope does not show."""
        if subject not in self._narrowable:
            found: set[str] = set()
            for pid in self.narrowed(subject):
                person = self.persons[pid]
                found.update(
                    f
                    for f in ALL_GUARDED
                    if subject.effect(f) != DENY and self.effect(subject, person, f) == DENY
                )
            self._narrowable[subject] = frozenset(found)
        return self._narrowable[subject]

    def matches(self, person: PersonRecord, flt: Mapping[str, Any] | None) -> bool:
        """PersonFilter semantics (CONTRACT.md): all given conditions hold."""
        if not flt:
            return True
        prefix = flt.get("regionPrefix")
        if prefix is not None and not person.region_code.startswith(prefix):
            return False
        category = flt.get("category")
        active_on = flt.get("activeOn")
        if category is not None or active_on is not None:
            day = active_on or self.today
            if not self.holds(person, None if category is None else [str(category)], day):
                return False
        year = flt.get("enrolledIn")
        return year is None or any(
            e.year == year and e.status == "ACTIVE" for e in self.enrollments[person.person_id]
        )

    def filtered_scope(self, subject: Subject, flt: Mapping[str, Any] | None) -> set[uuid.UUID]:
        return {pid for pid in self.scope(subject) if self.matches(self.persons[pid], flt)}

    # -- secrets: plaintext of sensitive fields the subject may not read in clear
    def secrets(self, subject: Subject) -> set[str]:
        """Every sealed value the subject must never receive in clear, minus values it may
        legitimately read (two people can share an address or a name). A person seen only
        through a place keeps phone and address secret, whatever the department's list."""
        forbidden: set[str] = set()
        allowed: set[str] = set()
        scope = self.scope(subject)
        for pid, person in self.persons.items():
            for name, value in (
                ("Person.idNumber", person.id_number),
                ("Person.name", person.name),
                ("Person.phone", person.phone),
                ("Person.address", person.address),
            ):
                if value is None:
                    continue
                if pid in scope and self.reads(subject, person, name):
                    allowed.add(value)
                else:
                    forbidden.add(value)
        return forbidden - allowed


_worlds: dict[int, World] = {}


def world_of(harness: Any) -> World:
    """One ``World`` per harness (the seeded data is shared and never changes)."""
    key = id(harness)
    if key not in _worlds:
        _worlds[key] = World(harness.bundles, harness.today)
    return _worlds[key]


# ---------------------------------------------------------------------------- selections
class EnumLit(str):
    """A GraphQL enum literal (rendered bare, not quoted)."""

    __slots__ = ()


@dataclass(frozen=True)
class Sel:
    """One field of a selection: ``alias: field(args) { children }``.

    ``wrap`` renders the field inside an inline fragment (``"inline"``) or a named fragment
    spread (``"named"``); the response shape is the same either way.
    """

    field: str
    alias: str | None = None
    args: tuple[tuple[str, Any], ...] = ()
    children: tuple[Sel, ...] = ()
    wrap: str | None = None

    @property
    def key(self) -> str:
        return self.alias or self.field

    def arg(self, name: str) -> Any:
        return dict(self.args).get(name)


CHILD_TYPE = {
    ("Query", "person"): "Person",
    ("Query", "persons"): "PersonConnection",
    ("PersonConnection", "edges"): "PersonEdge",
    ("PersonConnection", "pageInfo"): "PageInfo",
    ("PersonEdge", "node"): "Person",
    ("Person", "household"): "Household",
    ("Person", "reliefStatuses"): "ReliefStatus",
    ("Person", "enrollments"): "Enrollment",
    ("Person", "costBurdens"): "CostBurden",
    ("Household", "members"): "Person",
}


class Var(str):
    """A GraphQL variable reference (rendered ``$name``)."""

    __slots__ = ()


def literal(value: Any) -> str:
    if isinstance(value, Var):
        return f"${value}"
    if isinstance(value, EnumLit):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def render(selections: Iterable[Sel], *, operation: str = "query Q") -> str:
    fragments: list[str] = []

    def block(sels: Iterable[Sel], parent: str) -> str:
        parts = []
        for sel in sels:
            text = sel.field
            if sel.alias:
                text = f"{sel.alias}: {text}"
            if sel.args:
                text += "(" + ", ".join(f"{k}: {literal(v)}" for k, v in sel.args) + ")"
            if sel.children:
                text += " " + block(sel.children, CHILD_TYPE[(parent, sel.field)])
            if sel.wrap == "inline":
                text = f"... on {parent} {{ {text} }}"
            elif sel.wrap == "named":
                name = f"F{len(fragments)}"
                fragments.append("")  # reserve the name before recursing further
                fragments[int(name[1:])] = f"fragment {name} on {parent} {{ {text} }}"
                text = f"...{name}"
            parts.append(text)
        return "{ " + " ".join(parts) + " }"

    body = block(selections, "Query")
    return "\n".join([f"{operation} {body}", *fragments])


def person_selection(*, members: tuple[Sel, ...] | None = None) -> tuple[Sel, ...]:
    """Every Person field of the contract (household members with ``members``' fields)."""
    if members is None:
        members = (
            *(Sel(f) for f in ("id", "idNumber", "name", "phone", "regionCode")),
            Sel("reliefStatuses", children=(Sel("category"), Sel("validTo"))),
            Sel("enrollments", children=(Sel("year"), Sel("status"), Sel("subsidyAmount"))),
            Sel("costBurdens", children=(Sel("year"), Sel("totalCost"), Sel("inpatientCount"))),
        )
    return (
        Sel("id"),
        Sel("regionCode"),
        *(Sel(f) for f in ("idNumber", "name", "gender", "birthDate", "phone", "address")),
        Sel("household", children=(Sel("id"), Sel("members", children=members))),
        Sel("reliefStatuses", children=(Sel("category"), *(Sel(f) for f in RELIEF_GUARDED))),
        Sel("enrollments", children=(Sel("year"), *(Sel(f) for f in ENROLLMENT_GUARDED))),
        Sel("costBurdens", children=(Sel("year"), *(Sel(f) for f in COST_GUARDED))),
    )


# ---------------------------------------------------------------------------- checking
Path = tuple[str | int, ...]


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _relief_value(record: ReliefStatusRecord, name: str) -> Any:
    return {
        "category": record.category,
        "sourceDepartment": record.source_department.upper(),
        "recognizedOn": _iso(record.recognized_on),
        "validFrom": _iso(record.valid_from),
        "validTo": _iso(record.valid_to),
    }[name]


def _enrollment_value(record: EnrollmentRecord, name: str) -> Any:
    return {
        "year": record.year,
        "insuranceType": record.insurance_type,
        "status": record.status,
        "regionCode": record.region_code,
        "subsidyCategory": record.subsidy_category,
        "subsidyAmount": _money(record.subsidy_amount),
    }[name]


def _cost_value(record: CostBurdenRecord, name: str) -> Any:
    value = getattr(record, _snake(name))
    return _money(value) if isinstance(value, Decimal) else value


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def normalize_id(raw: str) -> str:
    """How a clerk's typing of an ID maps to the stored form (full-width, spaces, lower x)."""
    return "".join(unicodedata.normalize("NFKC", raw).split()).upper()


@dataclass
class Checker:
    """Checks one response against the rules for one subject.

    Walk the response with ``root(...)`` (or the finer methods); ``finish(body)`` then asserts
    that the errors are exactly the expected ones and that nothing the subject may not read in
    clear appears anywhere in the body.
    """

    world: World
    subject: Subject
    expected_errors: dict[Path, set[str]] = field(default_factory=dict)
    seen_people: set[uuid.UUID] = field(default_factory=set)
    selections: tuple[Sel, ...] = ()
    # Root fields whose error nulls the whole ``data`` (non-null root fields).
    _nulling: list[Path] = field(default_factory=list)

    def expect_error(self, path: Path, *codes: str) -> None:
        self.expected_errors[path] = set(codes)

    # -- leaves
    def _leaf(
        self, value: Any, path: Path, record: PersonRecord, type_field: str, clear: Any, where: str
    ) -> None:
        effect = self.world.effect(self.subject, record, type_field)
        if effect == DENY:
            assert value is None, f"{where}: denied {type_field} returned {value!r}"
            self.expect_error(path, "FORBIDDEN")
            return
        expected = clear
        if effect == MASK and clear is not None:
            expected = MASKS[type_field](clear)
        assert value == expected, f"{where}: {type_field} is {value!r}, expected {expected!r}"

    # -- person
    def person(self, node: Any, sels: Iterable[Sel], path: Path, record: PersonRecord) -> None:
        where = f"{self.subject} at {list(path)}"
        assert isinstance(node, dict), f"{where}: person node {node!r}"
        assert record.person_id in self.world.scope(self.subject), (
            f"{where}: expected person {record.person_id} is outside scope (test bug)"
        )
        self.seen_people.add(record.person_id)
        for sel in sels:
            value = node[sel.key]
            p = (*path, sel.key)
            name = sel.field
            if name == "__typename":
                assert value == "Person", where
            elif name == "id":
                assert value == str(record.person_id), where
            elif name == "regionCode":
                assert value == record.region_code, where
            elif name in ("idNumber", "name", "phone", "address"):
                clear = getattr(record, _snake(name))
                self._leaf(value, p, record, f"Person.{name}", clear, where)
            elif name == "gender":
                self._leaf(value, p, record, "Person.gender", record.gender, where)
            elif name == "birthDate":
                self._leaf(value, p, record, "Person.birthDate", _iso(record.birth_date), where)
            elif name == "household":
                self._household(value, sel, p, record, where)
            elif name == "reliefStatuses":
                day = sel.arg("activeOn")
                needs = ["ReliefStatus.validFrom", "ReliefStatus.validTo"] if day else []
                records: list[Any] = [
                    r
                    for r in self.world.statuses[record.person_id]
                    if day is None or holds_on(r, day)
                ]
                self._children(
                    value, sel, p, record, "Person.reliefStatuses", needs, records,
                    "ReliefStatus", _relief_value, where,
                )  # fmt: skip
            elif name == "enrollments":
                year = sel.arg("year")
                records = [
                    r
                    for r in self.world.enrollments[record.person_id]
                    if year is None or r.year == year
                ]
                self._children(
                    value, sel, p, record, "Person.enrollments", [], records, "Enrollment",
                    _enrollment_value, where,
                )  # fmt: skip
            elif name == "costBurdens":
                year = sel.arg("year")
                records = [
                    r for r in self.world.costs[record.person_id] if year is None or r.year == year
                ]
                self._children(
                    value, sel, p, record, "Person.costBurdens", [], records, "CostBurden",
                    _cost_value, where,
                )  # fmt: skip
            else:  # pragma: no cover - test bug
                raise AssertionError(f"unknown Person field {name}")

    def _household(
        self, value: Any, sel: Sel, path: Path, record: PersonRecord, where: str
    ) -> None:
        if not self.world.reads(self.subject, record, "Person.household"):
            assert value is None, f"{where}: denied household returned {value!r}"
            self.expect_error(path, "FORBIDDEN")
            return
        if record.household_id is None:
            assert value is None, where
            return
        assert isinstance(value, dict), f"{where}: household {value!r}"
        for child in sel.children:
            got = value[child.key]
            p = (*path, child.key)
            if child.field == "__typename":
                assert got == "Household", where
            elif child.field == "id":
                assert got == str(record.household_id), where
            elif child.field == "members":
                # The decision's: a household is reached only from a person seen whole.
                if not self.subject.reads("Household.members"):
                    assert got is None, f"{where}: denied members returned {got!r}"
                    self.expect_error(p, "FORBIDDEN")
                    continue
                self.members(got, child.children, p, record.household_id, where)
            else:  # pragma: no cover
                raise AssertionError(child.field)

    def members(
        self, got: Any, sels: tuple[Sel, ...], path: Path, household_id: uuid.UUID, where: str
    ) -> None:
        scope = self.world.scope(self.subject)
        expected = {
            m.person_id for m in self.world.households[household_id] if m.person_id in scope
        }
        assert isinstance(got, list), f"{where}: members {got!r}"
        id_key = next((s.key for s in sels if s.field == "id"), None)
        assert id_key is not None, "member selections must include id (test bug)"
        ids = [uuid.UUID(m[id_key]) for m in got]
        assert len(ids) == len(set(ids)), f"{where}: duplicate household members"
        outside = set(ids) - expected
        assert not outside, f"{where}: household members outside scope or household: {outside}"
        assert set(ids) == expected, f"{where}: in-scope members missing: {expected - set(ids)}"
        for index, (member_id, node) in enumerate(zip(ids, got, strict=True)):
            self.person(node, sels, (*path, index), self.world.persons[member_id])

    def _children(
        self,
        value: Any,
        sel: Sel,
        path: Path,
        person: PersonRecord,
        relation: str,
        argument_needs: list[str],
        records: list[Any],
        type_name: str,
        getter: Callable[[Any, str], Any],
        where: str,
    ) -> None:
        def reads(field_name: str) -> bool:
            return self.world.reads(self.subject, person, field_name)

        # Arguments are refused by the decision (the caller's list), relations per person.
        if not reads(relation) or not all(self.subject.reads(n) for n in argument_needs):
            assert value is None, f"{where}: denied {relation} returned {value!r}"
            self.expect_error(path, "FORBIDDEN")
            return
        assert isinstance(value, list), f"{where}: {relation} {value!r}"
        assert len(value) == len(records), (
            f"{where}: {relation} has {len(value)} items, expected {len(records)}"
        )
        expected_items: Counter[str] = Counter()
        for record in records:
            item: dict[str, Any] = {}
            for child in sel.children:
                if child.field == "__typename":
                    item[child.key] = type_name
                elif reads(f"{type_name}.{child.field}"):
                    item[child.key] = getter(record, child.field)
                else:
                    item[child.key] = None
            expected_items[json.dumps(item, sort_keys=True)] += 1
        got_items = Counter(json.dumps(v, sort_keys=True) for v in value)
        assert got_items == expected_items, (
            f"{where}: {relation} items differ: got {sorted(got_items)} "
            f"expected {sorted(expected_items)}"
        )
        for index in range(len(value)):
            for child in sel.children:
                if child.field != "__typename" and not reads(f"{type_name}.{child.field}"):
                    self.expect_error((*path, index, child.key), "FORBIDDEN")

    # -- roots
    def lookup(self, value: Any, sel: Sel, path: Path, raw_id: str) -> None:
        """``person(idNumber: raw_id)``: the person when in scope, else null; refused without
        Person.idNumber READ; BAD_USER_INPUT for a malformed number."""
        where = f"{self.subject} person({raw_id!r})"
        normalized = normalize_id(raw_id)
        record = self.world.by_id_number.get(normalized)
        if not self.subject.reads("Person.idNumber"):
            assert value is None, f"{where}: lookup without idNumber READ returned {value!r}"
            # Malformed input may be reported either way; a well-formed one must be refused.
            codes = ("FORBIDDEN",) if _well_formed(normalized) else ("FORBIDDEN", "BAD_USER_INPUT")
            self.expect_error(path, *codes)
            return
        if not _well_formed(normalized):
            assert value is None, where
            self.expect_error(path, "BAD_USER_INPUT")
            return
        if record is None or record.person_id not in self.world.scope(self.subject):
            assert value is None, f"{where}: out-of-scope or absent person returned {value!r}"
            return
        self.person(value, sel.children, path, record)

    def persons(self, value: Any, sel: Sel, path: Path) -> None:
        """``persons(filter, first)`` without ``after``: a page of the filtered scope."""
        flt = sel.arg("filter")
        first = sel.arg("first")
        first = 50 if first is None else first
        where = f"{self.subject} persons(filter={flt}, first={first})"
        if not all(self.subject.reads(n) for n in filter_needs(flt)):
            self.expect_error(path, "FORBIDDEN")
            self._nulling.append(path)
            return
        assert isinstance(value, dict), f"{where}: {value!r}"
        expected = self.world.filtered_scope(self.subject, flt)
        page_ids: list[uuid.UUID] = []
        for child in sel.children:
            got = value[child.key]
            if child.field == "__typename":
                assert got == "PersonConnection"
            elif child.field == "totalCount":
                assert got == len(expected), f"{where}: totalCount {got} != {len(expected)}"
            elif child.field == "pageInfo":
                for info in child.children:
                    if info.field == "hasNextPage":
                        assert got[info.key] == (len(expected) > first), where
                    elif info.field == "endCursor" and min(first, len(expected)) == 0:
                        assert got[info.key] is None, where
            elif child.field == "edges":
                assert len(got) == min(first, len(expected)), (
                    f"{where}: {len(got)} edges, expected {min(first, len(expected))}"
                )
                for index, edge in enumerate(got):
                    for part in child.children:
                        if part.field == "node":
                            id_key = next(s.key for s in part.children if s.field == "id")
                            pid = uuid.UUID(edge[part.key][id_key])
                            assert pid in expected, f"{where}: {pid} not in filtered scope"
                            page_ids.append(pid)
                            self.person(
                                edge[part.key],
                                part.children,
                                (*path, child.key, index, part.key),
                                self.world.persons[pid],
                            )
                        elif part.field == "cursor":
                            assert isinstance(edge[part.key], str)
        assert len(page_ids) == len(set(page_ids)), f"{where}: duplicate people in one page"

    def root(self, body: Mapping[str, Any], selections: Iterable[Sel]) -> None:
        """Check a whole response to the root ``selections``; then ``finish``."""
        self.selections = tuple(selections)
        data = body.get("data")
        refused = [
            s
            for s in self.selections
            if s.field == "persons"
            and not all(self.subject.reads(n) for n in filter_needs(s.arg("filter")))
        ]
        if refused:
            # persons is non-null: its refusal nulls the whole response (GraphQL null bubbling).
            assert data is None, f"{self.subject}: refused filter still returned data {data}"
            for sel in refused:
                self.persons(None, sel, (sel.key,))
        else:
            assert isinstance(data, dict), f"{self.subject}: no data: {body.get('errors')}"
            for sel in self.selections:
                value = data[sel.key]
                if sel.field == "__typename":
                    assert value == "Query"
                elif sel.field == "person":
                    self.lookup(value, sel, (sel.key,), sel.arg("idNumber"))
                elif sel.field == "persons":
                    self.persons(value, sel, (sel.key,))
                else:  # pragma: no cover
                    raise AssertionError(sel.field)
        self.finish(body)

    # -- final
    def finish(self, body: Mapping[str, Any]) -> None:
        errors = body.get("errors") or []
        got: dict[Path, str] = {}
        for error in errors:
            code = error.get("extensions", {}).get("code")
            path = tuple(error.get("path") or ())
            assert path, f"{self.subject}: error without a path: {error}"
            assert path not in got, f"{self.subject}: two errors at {list(path)}"
            got[path] = code
            if code == "FORBIDDEN" and self.selections:
                narrowable = self.world.narrowable(self.subject)
                assert denied_at(self.subject, self.selections, path, narrowable), (
                    f"{self.subject}: FORBIDDEN at {list(path)}, which the subject may read"
                )
        if body.get("data") is None:
            # A refused non-null root nulls everything, and GraphQL may stop (cancel) sibling
            # root fields once one has failed: at least one refused root must be reported,
            # and every other error must be of an expected kind (FORBIDDEN ones are checked
            # by denied_at above).
            assert any(got.get(p) in self.expected_errors[p] for p in self._nulling), (
                f"{self.subject}: no refused root reported: {errors}"
            )
            for path, code in got.items():
                assert code in ("FORBIDDEN", "BAD_USER_INPUT"), (
                    f"{self.subject}: unexpected error {code} at {list(path)}"
                )
        else:
            unexpected = {p: c for p, c in got.items() if c not in self.expected_errors.get(p, ())}
            missing = set(self.expected_errors) - set(got)
            assert not unexpected, f"{self.subject}: unexpected errors {_short(unexpected)}"
            assert not missing, f"{self.subject}: missing errors at {_short(missing)}"
        assert_no_secrets(self.world, self.subject, body)


def filter_needs(flt: Mapping[str, Any] | None) -> list[str]:
    """The fields a PersonFilter reveals (CONTRACT.md: no filtering by unreadable fields)."""
    needs: list[str] = []
    if flt:
        if flt.get("category") is not None:
            needs.append("Person.reliefStatuses")
        if flt.get("activeOn") is not None:
            needs += ["Person.reliefStatuses", "ReliefStatus.validFrom", "ReliefStatus.validTo"]
        if flt.get("enrolledIn") is not None:
            needs += ["Person.enrollments", "Enrollment.status"]
    return needs


def denied_at(
    subject: Subject,
    selections: Iterable[Sel],
    path: Path,
    narrowable: frozenset[str] = frozenset(),
) -> bool:
    """Whether ``path`` (a response path) ends at a field or argument the subject may not use,
    or at one of ``narrowable``: fields its list grants that a person seen only through a
    place does not show (``World.narrowable``; which person is at the path is for the walk
    of the response to say)."""
    parent = "Query"
    sels = tuple(selections)
    keys = [k for k in path if not isinstance(k, int)]
    for position, key in enumerate(keys):
        sel = next((s for s in sels if s.key == key), None)
        if sel is None:
            return False
        if position == len(keys) - 1:
            if (parent, sel.field) == ("Query", "person"):
                return not subject.reads("Person.idNumber")
            if (parent, sel.field) == ("Query", "persons"):
                return not all(subject.reads(n) for n in filter_needs(sel.arg("filter")))
            needs = [f"{parent}.{sel.field}"]
            if needs[0] in narrowable:
                return True
            if (parent, sel.field) == ("Person", "reliefStatuses") and sel.arg("activeOn"):
                needs += ["ReliefStatus.validFrom", "ReliefStatus.validTo"]
            return not all(subject.reads(n) for n in needs)
        parent = CHILD_TYPE.get((parent, sel.field), "")
        sels = sel.children
    return False


def _short(items: Any, limit: int = 8) -> str:
    items = list(items.items()) if isinstance(items, dict) else sorted(items, key=str)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f" … ({len(items)} in all)" if len(items) > limit else "")


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def check_digit(body17: str) -> str:
    """ISO 7064 MOD 11-2, as GB 11643 writes it."""
    total = sum(int(d) * w for d, w in zip(body17, _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def make_id(region6: str, birth: date, sequence: int) -> str:
    body = f"{region6}{birth:%Y%m%d}{sequence:03d}"
    return body + check_digit(body)


def _well_formed(normalized: str) -> bool:
    """GB 11643 shape and check digit (the gateway also checks province and birth date; the
    tests only build malformed numbers that fail one of these two)."""
    body, check = normalized[:17], normalized[17:]
    if len(normalized) != 18 or not (body.isascii() and body.isdigit()):
        return False
    return check != "" and check in "0123456789X" and check_digit(body) == check


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from strings_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_in(v)


def assert_no_secrets(world: World, subject: Subject, body: Mapping[str, Any]) -> None:
    """No sealed plaintext the subject may not read in clear appears in data or errors.

    Data strings must not equal a secret (nor contain a secret ID number or phone); error
    messages must not contain any secret at all.
    """
    secrets = world.secrets(subject)
    long_secrets = [s for s in secrets if s.isascii()]  # ID numbers and phones
    for text in strings_in(body.get("data")):
        assert text not in secrets, f"{subject}: response data contains secret {text!r}"
        for secret in long_secrets:
            assert secret not in text, f"{subject}: response data embeds secret {secret!r}"
    for error in body.get("errors") or []:
        message = json.dumps(error, ensure_ascii=False)
        for secret in secrets:
            if len(secret) >= 2:
                assert secret not in message, f"{subject}: error leaks {secret!r}: {message}"
