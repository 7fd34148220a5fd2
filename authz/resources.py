"""The catalogue of guarded fields: the objects policy lines are written for.

A field not listed here is structural and always readable once its row is (``Person.id``,
``Person.regionCode``: the caller's own jurisdiction; the key fields of child records). The
schema test asserts that every other GraphQL field of these types is in this catalogue.
"""

from __future__ import annotations

from gateway.domain.places import PlaceKind

GUARDED_FIELDS: tuple[str, ...] = (
    "Person.idNumber",
    "Person.name",
    "Person.gender",
    "Person.birthDate",
    "Person.phone",
    "Person.address",
    "Person.household",
    "Person.reliefStatuses",
    "Person.enrollments",
    "Person.costBurdens",
    "Person.underVerification",
    "Person.provenance",
    "Person.effectiveRelief",
    "Household.members",
    "ReliefStatus.sourceDepartment",
    "ReliefStatus.recognizedOn",
    "ReliefStatus.validFrom",
    "ReliefStatus.validTo",
    "ReliefStatus.provenance",
    "Enrollment.insuranceType",
    "Enrollment.status",
    "Enrollment.regionCode",
    "Enrollment.subsidyCategory",
    "Enrollment.subsidyAmount",
    "Enrollment.provenance",
    "CostBurden.totalCost",
    "CostBurden.basicInsurancePaid",
    "CostBurden.criticalIllnessPaid",
    "CostBurden.medicalAssistancePaid",
    "CostBurden.personalBurden",
    "CostBurden.inpatientCount",
    "CostBurden.provenance",
)

# Operations of the exchange a policy grants with the action "call" (not person fields: what
# they return is the caller's own department's work, scoped by department and jurisdiction).
OPERATIONS: tuple[str, ...] = (
    "Ingest.batches",  # list the department's batches and their counts
    "Ingest.submitRecords",  # push records of the department's own feeds
    "Ingest.anomalies",  # the anomalies sent back to the department
    "Ingest.resolveAnomaly",  # answer one of them
    # The closed loop (DOMAIN.md rules 3, 7, 8; one relief chain per person, 000 §1)
    "Loop.warnings",  # high-cost warnings: all in the jurisdiction, or those pushed to the caller
    "Loop.tasks",  # the tasks pushed to the caller's department
    "Loop.answerTask",  # answer one of them (a recognition creates the relief status)
    "Loop.otherDepartments",  # see other departments' tasks and anomalies (the hub: MIB)
    "Loop.reliefChain",  # one person's timeline across departments
    "Loop.coverage",  # enrollment coverage and the suspected non-enrolled (002 §1)
    "Statistics.read",  # aggregates only, small cells suppressed (000 §5)
    "Webhook.manage",  # webhook endpoints and deliveries (beside the system_admin role)
)

# Fields with a meaningful masked form (contract: ID 370102********1234, phone 138****5678,
# name 张*). A "mask" grant on any other field releases nothing: it counts as denied.
MASKABLE_FIELDS: frozenset[str] = frozenset(
    {"Person.idNumber", "Person.name", "Person.phone", "Person.address"}
)

# Derived fields reveal what they are computed from: granted only with their sources.
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "Person.effectiveRelief": (
        "Person.reliefStatuses",
        "ReliefStatus.recognizedOn",
        "ReliefStatus.validFrom",
        "ReliefStatus.validTo",
    ),
}

# What reading a relation's child fields presupposes: the relation itself.
PARENT_RELATION: dict[str, str] = {
    "Household": "Person.household",
    "ReliefStatus": "Person.reliefStatuses",
    "Enrollment": "Person.enrollments",
    "CostBurden": "Person.costBurdens",
}

# Filter and lookup arguments → the fields they reveal (no existence oracle, CONTRACT.md).
# Looking up by ID number needs it in clear: matching a full number against a masked one
# would confirm a number the caller is not allowed to read.
ARGUMENT_REQUIRES: dict[str, tuple[str, ...]] = {
    "person.idNumber": ("Person.idNumber",),
    "PersonFilter.category": ("Person.reliefStatuses",),
    "PersonFilter.activeOn": (
        "Person.reliefStatuses",
        "ReliefStatus.validFrom",
        "ReliefStatus.validTo",
    ),
    "PersonFilter.enrolledIn": ("Person.enrollments", "Enrollment.status"),
    "Person.reliefStatuses.activeOn": ("ReliefStatus.validFrom", "ReliefStatus.validTo"),
}

# Fields follow the place (issue 14, DOMAIN.md rule 9). A person the caller sees only through a
# place other than the residence — the county that insures them, or where a department
# recognised their identity — is seen for that relation only: who they are, and the records the
# place stands for; never contact details, address or household (those stay with the residence
# and with a push addressed to the department, which show the department's whole list). Always
# intersected with the department's list: this narrows a grant, it never adds one.
IDENTIFICATION: frozenset[str] = frozenset(
    {"Person.idNumber", "Person.name", "Person.gender", "Person.birthDate"}
)
_RELIEF = frozenset(
    {
        "Person.reliefStatuses",
        "ReliefStatus.sourceDepartment",
        "ReliefStatus.recognizedOn",
        "ReliefStatus.validFrom",
        "ReliefStatus.validTo",
        "Person.effectiveRelief",
        "Person.underVerification",
    }
)
_COST = frozenset(
    {
        "Person.costBurdens",
        "CostBurden.totalCost",
        "CostBurden.basicInsurancePaid",
        "CostBurden.criticalIllnessPaid",
        "CostBurden.medicalAssistancePaid",
        "CostBurden.personalBurden",
        "CostBurden.inpatientCount",
    }
)
PLACE_FIELDS: dict[PlaceKind, frozenset[str]] = {
    # 参保地 pays basic and critical-illness benefits and marks identities for the subsidised
    # enrollment (004 §1, §3): the enrollments, the cost burden, the identities to mark.
    PlaceKind.INSURED: IDENTIFICATION
    | _RELIEF
    | _COST
    | {
        "Person.enrollments",
        "Enrollment.insuranceType",
        "Enrollment.status",
        "Enrollment.regionCode",
        "Enrollment.subsidyCategory",
        "Enrollment.subsidyAmount",
    },
    # 认定地 recognised the identity and pays medical assistance on the burden (004 §3): the
    # identities, the cost burden, and whether (not where) the person is insured.
    PlaceKind.IDENTITY: IDENTIFICATION
    | _RELIEF
    | _COST
    | {"Person.enrollments", "Enrollment.insuranceType", "Enrollment.status"},
}
