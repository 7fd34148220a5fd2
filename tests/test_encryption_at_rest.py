"""Encryption at rest, seen from outside the gateway: the database files and dumps hold no
identifying plaintext, both cipher suites work end to end, and ciphertexts moved between rows
fail closed (``DATA_INTEGRITY``) without leaking the other person's data."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.crypto import Keyring
from gateway.domain.records import PersonRecord
from gateway.storage.models import Person
from tests.harness import Harness, build_harness
from tests.pgcluster import ThrowawayCluster

SUITES = ("aes-256-gcm+hmac-sha256", "sm4-gcm+hmac-sm3")
ONE = """
query One($id: String!) {
  person(idNumber: $id) { id idNumber name gender birthDate regionCode phone address }
}
"""
PAGE = """
query Page($prefix: String) {
  persons(first: 200, filter: {regionPrefix: $prefix}) {
    totalCount
    edges { node { id idNumber name gender birthDate regionCode phone address } }
  }
}
"""


def _sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def _secrets(persons: Iterable[PersonRecord]) -> list[tuple[str, str]]:
    """(label, plaintext) of every seeded identifying value worth looking for."""
    found: list[tuple[str, str]] = []
    for person in persons:
        found.append(("id_number", person.id_number))
        if len(person.name) >= 2:
            found.append(("name", person.name))
        if person.phone:
            found.append(("phone", person.phone))
        if person.address and len(person.address) >= 6:
            found.append(("address", person.address))
    return found


def _leaks(blob: bytes, secrets: list[tuple[str, str]], *, hex_too: bool) -> list[str]:
    leaks = []
    lowered = blob.lower() if hex_too else b""
    for label, value in secrets:
        encodings = {value.encode("utf-8")}
        if label == "name" and len(value) >= 3:
            # GBK too (6+ bytes; a 2-character GBK name is 4 bytes, which random ciphertext
            # contains by chance in a database of this size).
            encodings.add(value.encode("gbk", errors="ignore"))
        for encoded in encodings:
            if encoded and encoded in blob:
                leaks.append(f"{label} {value!r} in clear")
            # bytea columns are dumped as hex: plaintext stored in a binary column shows so.
            if hex_too and encoded.hex().encode() in lowered:
                leaks.append(f"{label} {value!r} as hex")
    return leaks


async def _raw_database(harness: Harness, request: pytest.FixtureRequest) -> tuple[bytes, bool]:
    url = harness.runtime.settings.resolved_database_url
    if harness.backend == "sqlite":
        path = _sqlite_path(url)
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        blob = b"".join(f.read_bytes() for f in files if f.exists())
        assert len(blob) > 100_000  # really the seeded database
        return blob, False
    cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
    dump = cluster.pg_dump(_dbname(url))
    assert b"COPY public.person" in dump
    return dump, True


async def test_no_plaintext_in_database(harness: Harness, request: pytest.FixtureRequest) -> None:
    blob, hex_too = await _raw_database(harness, request)
    secrets = _secrets(harness.persons)
    assert len(harness.persons) == 900
    assert sum(1 for label, _ in secrets if label == "id_number") == 900
    assert sum(1 for label, _ in secrets if label == "phone") > 0
    leaks = _leaks(blob, secrets, hex_too=hex_too)
    assert not leaks, f"{len(leaks)} plaintext values found, e.g. {leaks[:5]}"


async def test_no_key_material_in_database(
    harness: Harness, request: pytest.FixtureRequest
) -> None:
    blob, hex_too = await _raw_database(harness, request)
    keyring = Keyring.load(harness.runtime.settings.keyring_path)
    materials = [k.material for k in keyring.data_keys.values()] + [keyring.index_key.material]
    materials.append(harness.runtime.settings.token_key_path.read_bytes().strip())
    for material in materials:
        assert material not in blob
        if hex_too:
            assert material.hex().encode() not in blob.lower()


async def test_ciphertexts_carry_key_id_and_differ_for_equal_values(harness: Harness) -> None:
    async with harness.runtime.sessions() as session:
        rows = (await session.execute(select(Person.id, Person.name_ct).limit(200))).all()
    key_id = Keyring.load(harness.runtime.settings.keyring_path).primary_id.encode()
    assert all(key_id in row.name_ct for row in rows)
    names = {p.person_id: p.name for p in harness.persons}
    by_name: dict[str, list[bytes]] = {}
    for row in rows:
        by_name.setdefault(names[row.id], []).append(row.name_ct)
    for sealed in by_name.values():
        assert len(set(sealed)) == len(sealed)  # same name, different ciphertext


# --------------------------------------------------------------------------- private harnesses


@pytest.fixture
async def make_private(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> AsyncIterator[Callable[..., Any]]:
    built: list[tuple[Harness, str | None]] = []

    async def make(*, persons: int, cipher_suite: str = SUITES[0]) -> Harness:
        name = None
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / f'private-{len(built)}.db'}"
        else:
            cluster: ThrowawayCluster = request.getfixturevalue("postgres_cluster")
            name = f"relief_at_rest_{uuid.uuid4().hex[:10]}"
            url = cluster.create_database(name)
        h = await build_harness(
            tmp_path / f"data-{len(built)}",
            url,
            backend=backend,
            persons=persons,
            cipher_suite=cipher_suite,
        )
        built.append((h, name))
        return h

    yield make
    for h, name in built:
        await h.close()
        if name is not None:
            request.getfixturevalue("postgres_cluster").drop_database(name)


@pytest.mark.parametrize("suite", SUITES)
async def test_cipher_suite_end_to_end(
    make_private: Callable[..., Any], suite: str, request: pytest.FixtureRequest
) -> None:
    h: Harness = await make_private(persons=50, cipher_suite=suite)
    keyring = json.loads(h.runtime.settings.keyring_path.read_text(encoding="utf-8"))
    expected = {"aes-256-gcm+hmac-sha256": "AES-256-GCM", "sm4-gcm+hmac-sm3": "SM4-GCM"}[suite]
    assert {entry["algorithm"] for entry in keyring["data_keys"].values()} == {expected}
    assert keyring["index_key"]["algorithm"] == (
        "HMAC-SM3" if suite.startswith("sm4") else "HMAC-SHA-256"
    )

    province = h.persons[0].region_code[:2]
    token = h.token("medical_insurance", "province", province)
    body = await h.query(token, PAGE, {"prefix": province})
    assert "errors" not in body, body["errors"]
    got = {edge["node"]["id"]: edge["node"] for edge in body["data"]["persons"]["edges"]}
    wanted = [p for p in h.persons if p.region_code.startswith(province)]
    assert body["data"]["persons"]["totalCount"] == len(wanted) == len(got)
    for person in wanted:
        node = got[str(person.person_id)]
        assert node["idNumber"] == person.id_number
        assert node["name"] == person.name
        assert node["phone"] == person.phone
        assert node["address"] == person.address
        assert node["birthDate"] == person.birth_date.isoformat()

    # Lookup through the blind index (HMAC-SHA-256 or HMAC-SM3).
    for person in wanted[:5]:
        one = await h.query(token, ONE, {"id": person.id_number})
        assert one["data"]["person"]["name"] == person.name

    blob, hex_too = await _raw_database(h, request)
    leaks = _leaks(blob, _secrets(h.persons), hex_too=hex_too)
    assert not leaks, leaks[:5]


def _pick_pair(h: Harness, column: str) -> tuple[PersonRecord, PersonRecord]:
    """Two people of one province with distinct values that do not occur in each other's
    other fields (so 'B's value never appears' is a meaningful check)."""
    attribute = {"name": "name", "id_number": "id_number", "phone": "phone", "address": "address"}
    for a in h.persons:
        for b in h.persons:
            if a is b or a.region_code[:2] != b.region_code[:2]:
                continue
            if a.household_id == b.household_id:
                continue
            if not (a.phone and b.phone and a.address and b.address):
                continue
            if len(a.name) < 2 or len(b.name) < 2:
                continue
            value_b = getattr(b, attribute[column])
            a_text = json.dumps(
                [a.id_number, a.name, a.phone, a.address, a.region_code], ensure_ascii=False
            )
            if value_b in a_text or getattr(a, attribute[column]) == value_b:
                continue
            return a, b
    raise AssertionError("no suitable pair")


async def _swap(h: Harness, a: uuid.UUID, b: uuid.UUID, column: str) -> None:
    attribute = getattr(Person, f"{column}_ct")
    async with h.runtime.sessions() as session:
        sealed = dict(
            (await session.execute(select(Person.id, attribute).where(Person.id.in_([a, b])))).all()
        )
        await session.execute(update(Person).where(Person.id == a).values({attribute: sealed[b]}))
        await session.execute(update(Person).where(Person.id == b).values({attribute: sealed[a]}))
        await session.commit()


FIELD = {"name": "name", "id_number": "idNumber", "phone": "phone", "address": "address"}


@pytest.mark.parametrize("column", ["name", "id_number", "phone", "address"])
async def test_swapped_ciphertexts_fail_closed(
    make_private: Callable[..., Any], column: str
) -> None:
    h: Harness = await make_private(persons=60)
    a, b = _pick_pair(h, column)
    await _swap(h, a.person_id, b.person_id, column)
    token = h.token("medical_insurance", "province", a.region_code[:2])
    field = FIELD[column]
    value_of_b = getattr(b, column)
    value_of_a = getattr(a, column)

    # 1. Lookup of A (the blind index is untouched, so A is found).
    response = await h.post(token, ONE, {"id": a.id_number})
    assert response.status_code == 200
    assert value_of_b not in response.text
    body = response.json()
    node = body["data"]["person"]
    assert node is not None
    assert node[field] is None
    errors = body["errors"]
    assert len(errors) == 1
    assert errors[0]["path"] == ["person", field]
    assert errors[0]["extensions"]["code"] == "DATA_INTEGRITY"
    assert value_of_a not in errors[0]["message"]
    # Everything else about A is still served.
    expected = {
        "idNumber": a.id_number,
        "name": a.name,
        "phone": a.phone,
        "address": a.address,
        "regionCode": a.region_code,
        "birthDate": a.birth_date.isoformat(),
        "gender": a.gender,
        "id": str(a.person_id),
    }
    del expected[field]
    assert {k: v for k, v in node.items() if k != field} == expected

    # 2. A page holding both: both fields fail, every other person is served in full.
    response = await h.post(token, PAGE, {"prefix": a.region_code[:2]})
    body = response.json()
    nodes = {edge["node"]["id"]: edge["node"] for edge in body["data"]["persons"]["edges"]}
    assert nodes[str(a.person_id)][field] is None
    assert nodes[str(b.person_id)][field] is None
    bad_paths = {tuple(e["path"]) for e in body["errors"]}
    assert {e["extensions"]["code"] for e in body["errors"]} == {"DATA_INTEGRITY"}
    assert len(body["errors"]) == 2
    assert all(path[-1] == field for path in bad_paths)
    records = h.person_by_id()
    for person_id, node in nodes.items():
        record = records[uuid.UUID(person_id)]
        if record.person_id in (a.person_id, b.person_id):
            assert node["regionCode"] == record.region_code
            continue
        assert node[field] == getattr(record, column)
    # Neither swapped value shows up under a person it does not belong to (household members
    # legitimately share an address).
    for node in nodes.values():
        record = records[uuid.UUID(node["id"])]
        own = json.dumps(
            [record.id_number, record.name, record.phone, record.address], ensure_ascii=False
        )
        text = json.dumps(node, ensure_ascii=False)
        for value in (value_of_a, value_of_b):
            if value not in own:
                assert value not in text, (node["id"], value)


def test_leak_detector_detects_plaintext(harness: Harness) -> None:
    """The scan above would notice plaintext in either form (guards against a vacuous pass)."""
    person = harness.persons[0]
    secrets = _secrets([person])
    assert _leaks(b"..." + person.name.encode() + b"...", secrets, hex_too=False)
    assert _leaks(b"\\x" + person.id_number.encode().hex().encode(), secrets, hex_too=True)
    assert not _leaks(b"nothing here", secrets, hex_too=True)
