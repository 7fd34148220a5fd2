#!/usr/bin/env python3
"""Load the peer rig's people into a relief-gateway database, so both serve the same 100,000.

    .venv/bin/python bench/peer_import.py --peer-dsn postgresql://postgres@/peer?host=/tmp/peerpg&port=55432

The peer rig (``../shared/bench-peer/setup.sh``) keeps plaintext rows in ``peer.person``,
``peer.relief_status``, ``peer.enrollment`` and ``peer.cost_burden``. This script reads them and
stores them through the gateway's own writer (``gateway.storage.writer.write_bundles``: sealed
fields, blind indexes, provenance), with the gateway settings of the environment
(``RELIEF_DATABASE_URL``, ``RELIEF_DATA_DIR``). Each peer person becomes a one-person household;
identifiers are derived from the peer's ids (uuid5), so a re-import gives the same rows.

Vocabulary is mapped to the gateway's enums (peer ``dibao`` → ``MINIMUM_LIVING`` and so on). The
peer has one enrollment year (2025) and one cost year; both carry over as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NAMESPACE = uuid.UUID("5b0c5d4e-3a61-4f59-9a8e-2f1f6f0d7e11")  # bench-only, fixed

CATEGORIES = {
    "tekun": "EXTREME_POVERTY",
    "dibao": "MINIMUM_LIVING",
    "dibao_edge": "MINIMUM_LIVING_EDGE",
    "rigid_expense_hardship": "RIGID_EXPENDITURE",
    "illness_poverty": "SERIOUS_ILLNESS",
    "returned_poverty": "RETURNED_TO_POVERTY",
    "monitored": "MONITORED_UNSTABLE",
}
INSURANCE = {"resident": "RESIDENT", "employee": "EMPLOYEE"}
STATUS = {"active": "ACTIVE", "suspended": "SUSPENDED", "terminated": "TERMINATED"}
GENDER = {"male": "MALE", "female": "FEMALE"}


def person_uuid(peer_id: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"person:{peer_id}")


def household_uuid(peer_id: int) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"household:{peer_id}")


async def read_peer(dsn: str) -> dict[str, list[Any]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return {
            "person": await conn.fetch(
                "SELECT id, id_number, name, gender, birth_date, region_code, phone, address "
                "FROM peer.person ORDER BY id"
            ),
            "relief_status": await conn.fetch(
                "SELECT person_id, category, source_dept, valid_from, valid_to "
                "FROM peer.relief_status ORDER BY person_id, id"
            ),
            "enrollment": await conn.fetch(
                "SELECT person_id, year, insurance_type, status, subsidy_category, subsidy_amount "
                "FROM peer.enrollment ORDER BY person_id, id"
            ),
            "cost_burden": await conn.fetch(
                "SELECT person_id, year, total_cost, basic_paid, critical_paid, assistance_paid, "
                "personal_burden, inpatient_count FROM peer.cost_burden ORDER BY person_id, id"
            ),
        }
    finally:
        await conn.close()


def bundles(rows: dict[str, list[Any]]) -> Iterator[Any]:
    from gateway.domain.records import (
        CostBurdenRecord,
        EnrollmentRecord,
        HouseholdBundle,
        HouseholdRecord,
        PersonRecord,
        ReliefStatusRecord,
    )

    by_person: dict[str, dict[int, list[Any]]] = {}
    for table in ("relief_status", "enrollment", "cost_burden"):
        grouped: dict[int, list[Any]] = {}
        for row in rows[table]:
            grouped.setdefault(row["person_id"], []).append(row)
        by_person[table] = grouped
    for p in rows["person"]:
        pid = person_uuid(p["id"])
        region = p["region_code"]
        bundle = HouseholdBundle(household=HouseholdRecord(household_uuid(p["id"]), region))
        bundle.members.append(
            PersonRecord(
                person_id=pid,
                id_number=p["id_number"],
                name=p["name"],
                gender=GENDER[p["gender"]],
                birth_date=p["birth_date"],
                region_code=region,
                phone=p["phone"],
                address=p["address"],
                household_id=bundle.household.household_id,
                relation="户主",
            )
        )
        for r in by_person["relief_status"].get(p["id"], []):
            bundle.relief_statuses.append(
                ReliefStatusRecord(
                    person_id=pid,
                    category=CATEGORIES[r["category"]],
                    source_department=r["source_dept"],
                    recognized_on=r["valid_from"],
                    valid_from=r["valid_from"],
                    valid_to=r["valid_to"],
                )
            )
        for e in by_person["enrollment"].get(p["id"], []):
            subsidy = e["subsidy_category"]
            bundle.enrollments.append(
                EnrollmentRecord(
                    person_id=pid,
                    year=e["year"],
                    insurance_type=INSURANCE[e["insurance_type"]],
                    status=STATUS[e["status"]],
                    region_code=region,
                    subsidy_category=CATEGORIES[subsidy] if subsidy else None,
                    subsidy_amount=Decimal(e["subsidy_amount"]) if subsidy else None,
                )
            )
        for c in by_person["cost_burden"].get(p["id"], []):
            bundle.cost_burdens.append(
                CostBurdenRecord(
                    person_id=pid,
                    year=c["year"],
                    total_cost=c["total_cost"],
                    basic_insurance_paid=c["basic_paid"],
                    critical_illness_paid=c["critical_paid"],
                    medical_assistance_paid=c["assistance_paid"],
                    personal_burden=c["personal_burden"],
                    inpatient_count=c["inpatient_count"],
                )
            )
        yield bundle


async def import_peer(peer_dsn: str) -> dict[str, Any]:
    from gateway.domain.settings import load_settings
    from gateway.runtime.parts import Runtime
    from gateway.storage.writer import write_bundles

    started = time.monotonic()
    rows = await read_peer(peer_dsn)
    runtime = Runtime.create(load_settings(), create_keys=True)
    try:
        async with runtime.sessions() as session:
            counts = await write_bundles(
                session, runtime.vault, bundles(rows), submitted_by="peer-import"
            )
    finally:
        await runtime.close()
    return {
        "persons": counts.persons,
        "relief_statuses": counts.relief_statuses,
        "enrollments": counts.enrollments,
        "cost_burdens": counts.cost_burdens,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--peer-dsn", required=True, help="asyncpg DSN of the peer rig's database")
    args = ap.parse_args(argv)
    print(asyncio.run(import_peer(args.peer_dsn)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
