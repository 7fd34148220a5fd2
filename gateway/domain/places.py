"""Places of a person (issue 14, DOMAIN.md rule 9): the regions the shared data tie one person
to, each with its kind, because the notices give each place its own duty.

    residence     居住地    the region the person's latest record names (``person.county_code``)
    identity      认定地    where a department recognised a relief identity (004 §3: that place
                            pays medical assistance)
    insured       参保地    where the person is enrolled for a year (004 §3: that place pays
                            basic and critical-illness benefits)
    addressed     推送地    where a push or task was addressed to a department (a warning to the
                            person's county, a list to verify)
    reported      报送地    where a department sent a row about a person held elsewhere, until the
                            person's own county verifies it (issue 14 item 4): the sender sees
                            what its region sent and nothing the person's own places hold

A policy's row scope names the kinds that bring a person into a department's jurisdiction
(``authz.conditions``); without kinds, a row scope means the residence, as it always has. The
reported place is never named by a policy: every department sees what it sent itself.
"""

from __future__ import annotations

from enum import StrEnum


class PlaceKind(StrEnum):
    RESIDENCE = "residence"
    IDENTITY = "identity"
    INSURED = "insured"
    ADDRESSED = "addressed"
    REPORTED = "reported"


PLACE_NAMES_ZH: dict[PlaceKind, str] = {
    PlaceKind.RESIDENCE: "居住地",
    PlaceKind.IDENTITY: "身份认定地",
    PlaceKind.INSURED: "参保地",
    PlaceKind.ADDRESSED: "推送地",
    PlaceKind.REPORTED: "报送地",
}

# Stored in ``person_place`` and named by policies; the residence is the person row's own
# region, the reported place is stored too but implicit.
STORED_PLACE_KINDS = frozenset({PlaceKind.IDENTITY, PlaceKind.INSURED, PlaceKind.ADDRESSED})
# The kinds a policy's row scope may name (the reported place is implicit, see above).
POLICY_PLACE_KINDS = (
    PlaceKind.RESIDENCE,
    PlaceKind.IDENTITY,
    PlaceKind.INSURED,
    PlaceKind.ADDRESSED,
)
