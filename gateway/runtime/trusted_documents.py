"""Trusted documents: a department's production system pinned to the queries it registered.

``RELIEF_TRUSTED_DOCUMENTS_DIR`` holds one JSON file per pinned department, named after its code
(``medical_insurance.json``), mapping the SHA-256 (hex) of each document's exact text to the
text::

    {"5f0c…e1": "query PersonByIdNumber($idNumber: String!) { person(idNumber: $idNumber) { … } }"}

A pinned department may send only those documents: by hash alone (Apollo's persisted-query
extension or the GraphQL-over-HTTP ``documentId``) or as text whose hash is in its list.
Anything else is refused with ``PERSISTED_QUERY_NOT_ALLOWED`` (HTTP 403) before it is parsed.
Departments without a file send documents as usual. Files are checked at start-up: a hash that
does not match its text, or a file for an unknown department, stops the gateway.

    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "5f0c…e1"}}, "variables": …}
    {"documentId": "sha256:5f0c…e1", "variables": …}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

from gateway.domain.departments import Department
from gateway.domain.errors import (
    BadUserInput,
    ConfigurationError,
    PersistedQueryNotAllowed,
    PersistedQueryNotFound,
)

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def requested_hash(extensions: object, document_id: object) -> str | None:
    """The document hash a request names, if any (``extensions.persistedQuery.sha256Hash`` or
    ``documentId: "sha256:…"``)."""
    found: object = None
    if extensions is not None:
        if not isinstance(extensions, dict):
            raise BadUserInput("extensions 应为 JSON 对象")
        persisted = extensions.get("persistedQuery")
        if persisted is not None:
            if not isinstance(persisted, dict):
                raise BadUserInput("extensions.persistedQuery 应为 JSON 对象")
            found = persisted.get("sha256Hash")
    if document_id is not None:
        if not isinstance(document_id, str) or not document_id.startswith("sha256:"):
            raise BadUserInput('documentId 应为 "sha256:<64 位十六进制>"')
        found = document_id.removeprefix("sha256:")
    if found is None:
        return None
    if not isinstance(found, str) or not SHA256_HEX.match(found):
        raise BadUserInput("文档哈希应为 64 位小写十六进制 SHA-256")
    return found


class TrustedDocuments:
    def __init__(self, by_department: Mapping[str, Mapping[str, str]]) -> None:
        self.by_department = by_department

    @classmethod
    def load(cls, directory: Path | None) -> TrustedDocuments:
        if directory is None:
            return cls({})
        if not directory.is_dir():
            raise ConfigurationError(f"可信文档目录不存在: {directory}")
        known = {d.value for d in Department}
        by_department: dict[str, dict[str, str]] = {}
        for path in sorted(directory.glob("*.json")):
            if path.stem not in known:
                choices = ", ".join(sorted(known))
                raise ConfigurationError(
                    f"可信文档文件 {path.name}: 未知部门 {path.stem!r}; 可选: {choices}"
                )
            try:
                documents = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigurationError(f"可信文档文件 {path.name} 无法读取: {exc}") from None
            if not isinstance(documents, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in documents.items()
            ):
                raise ConfigurationError(f"可信文档文件 {path.name} 应为 {{哈希: 查询文本}} 对象")
            for digest, text in documents.items():
                if digest != document_hash(text):
                    raise ConfigurationError(
                        f"可信文档文件 {path.name}: 哈希 {digest[:12]}… 与其查询文本不符"
                    )
            by_department[path.stem] = documents
        return cls(by_department)

    def pinned(self, department: str) -> bool:
        return department in self.by_department

    def admit(self, department: str, query: str | None, sha256_hash: str | None) -> str:
        """The document to execute for ``department``, or the refusal."""
        documents = self.by_department.get(department)
        if sha256_hash is not None:
            if query is not None:
                if document_hash(query) != sha256_hash:
                    raise BadUserInput("查询文本与其 sha256Hash 不符")
            else:
                registered = (documents or {}).get(sha256_hash)
                if registered is None:
                    raise PersistedQueryNotFound(
                        f"未登记的查询文档 (sha256Hash {sha256_hash[:12]}…); 请发送查询文本"
                    )
                return registered
        if query is None:
            raise BadUserInput("缺少 query")
        if documents is not None and document_hash(query) not in documents:
            raise PersistedQueryNotAllowed(
                "本部门已启用可信文档: 只能执行已登记的查询 "
                "(按 sha256Hash 发送, 或发送与登记文本完全一致的查询)"
            )
        return query
