"""Trusted documents (gateway.runtime.trusted_documents): a pinned department runs only the
documents it registered, by hash or by identical text; anything else is refused before it is
parsed; other departments are unaffected; bad registration files stop the gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.domain.errors import ConfigurationError
from gateway.runtime.trusted_documents import TrustedDocuments, document_hash
from tests.hardening_support import codes, headers, post, refused, served, variant
from tests.harness import Harness

LOOKUP = "query Me { me { department level region } }"
COUNT = "query Count { persons(first: 1) { totalCount } }"


@pytest.fixture
async def pinned(harness: Harness, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Medical insurance pinned to LOOKUP and COUNT; no file for any other department."""
    (tmp_path / "medical_insurance.json").write_text(
        json.dumps({document_hash(text): text for text in (LOOKUP, COUNT)}), encoding="utf-8"
    )
    async with variant(harness, trusted_documents_dir=tmp_path) as client:
        yield client


def _medical(harness: Harness) -> str:
    return harness.token("medical_insurance", "province", harness.persons[0].region_code[:2])


def _persisted(text: str) -> dict[str, object]:
    return {"persistedQuery": {"version": 1, "sha256Hash": document_hash(text)}}


async def test_pinned_department_runs_registered_documents_by_hash(
    harness: Harness, pinned: httpx.AsyncClient
) -> None:
    token = _medical(harness)
    data = served(await post(pinned, token, None, extensions=_persisted(LOOKUP)))
    assert data["me"]["department"] == "MEDICAL_INSURANCE"
    data = served(await post(pinned, token, None, documentId=f"sha256:{document_hash(COUNT)}"))
    assert data["persons"]["totalCount"] > 0
    response = await pinned.get(
        "/graphql",
        params={"extensions": json.dumps(_persisted(LOOKUP))},
        headers=headers(token, Accept="application/json"),
    )
    assert served(response)["me"]["region"]


async def test_pinned_department_runs_registered_text(
    harness: Harness, pinned: httpx.AsyncClient
) -> None:
    token = _medical(harness)
    served(await post(pinned, token, LOOKUP))
    served(await post(pinned, token, LOOKUP, extensions=_persisted(LOOKUP)))


@pytest.mark.parametrize(
    "query",
    [
        "{ persons(first: 200) { edges { node { idNumber name phone } } } }",
        LOOKUP.replace("region", "region rowScope"),
        LOOKUP + " ",  # the hash is of the exact text
    ],
    ids=["bulk-export", "one-field-more", "trailing-space"],
)
async def test_pinned_department_cannot_send_other_documents(
    harness: Harness, pinned: httpx.AsyncClient, query: str
) -> None:
    response = await post(pinned, _medical(harness), query)
    message = refused(response, "PERSISTED_QUERY_NOT_ALLOWED", status=403)
    assert "可信文档" in message
    assert response.headers["x-request-id"]


async def test_unknown_or_mismatched_hash(harness: Harness, pinned: httpx.AsyncClient) -> None:
    token = _medical(harness)
    unknown = "{ persons(first: 200) { edges { node { idNumber } } } }"
    response = await post(pinned, token, None, extensions=_persisted(unknown))
    refused(response, "PERSISTED_QUERY_NOT_FOUND", status=400)
    # Registered hash, different text: the text is not run under the registered hash's name.
    response = await post(pinned, token, unknown, extensions=_persisted(LOOKUP))
    refused(response, "BAD_USER_INPUT", status=400)
    response = await post(pinned, token, None, extensions={"persistedQuery": {"sha256Hash": "x"}})
    refused(response, "BAD_USER_INPUT", status=400)


async def test_other_departments_are_unaffected(
    harness: Harness, pinned: httpx.AsyncClient
) -> None:
    civil = harness.token("civil_affairs", "province", harness.persons[0].region_code[:2])
    data = served(await post(pinned, civil, "{ me { department rowScope } }"))
    assert data["me"]["department"] == "CIVIL_AFFAIRS"
    # They have no list: a bare hash names nothing for them.
    response = await post(pinned, civil, None, extensions=_persisted(LOOKUP))
    refused(response, "PERSISTED_QUERY_NOT_FOUND", status=400)


async def test_no_directory_pins_nobody(harness: Harness) -> None:
    body = await harness.query(_medical(harness), "{ me { rowScope } }")
    assert "errors" not in body
    response = await harness.post(_medical(harness), "{ me { rowScope } }")
    assert not codes(response.json())


# --------------------------------------------------------------------------- loading


def test_loading_checks_every_hash(tmp_path: Path) -> None:
    (tmp_path / "civil_affairs.json").write_text(
        json.dumps({document_hash(LOOKUP): COUNT}), encoding="utf-8"
    )
    with pytest.raises(ConfigurationError, match="不符"):
        TrustedDocuments.load(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nobody.json", "{}", "未知部门"),
        ("health.json", "[]", "对象"),
        ("health.json", "{", "无法读取"),
    ],
)
def test_loading_refuses_bad_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message):
        TrustedDocuments.load(tmp_path)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="不存在"):
        TrustedDocuments.load(tmp_path / "absent")


def test_loaded_departments_are_pinned(tmp_path: Path) -> None:
    (tmp_path / "health.json").write_text(
        json.dumps({document_hash(LOOKUP): LOOKUP}), encoding="utf-8"
    )
    documents = TrustedDocuments.load(tmp_path)
    assert documents.pinned("health")
    assert not documents.pinned("civil_affairs")
    assert documents.admit("health", None, document_hash(LOOKUP)) == LOOKUP
