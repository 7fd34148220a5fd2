"""Decryption at the edge of storage: person rows carry ciphertext; the vault seals values on
the way in and opens them, one field at a time, only when the field guard releases them."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from gateway.crypto import FieldCipher
from gateway.domain.errors import DecryptionError
from gateway.domain.records import PersonRecord

TABLE = "person"

log = logging.getLogger(__name__)


class PersonVault:
    def __init__(self, cipher: FieldCipher) -> None:
        self.cipher = cipher

    def id_number_index(self, id_number: str) -> bytes:
        return self.cipher.blind_index(id_number, table=TABLE, column="id_number")

    def phone_index(self, phone: str) -> bytes:
        return self.cipher.blind_index(phone, table=TABLE, column="phone")

    def name_index(self, name: str) -> bytes:
        return self.cipher.blind_index(name, table=TABLE, column="name")

    def source_digest(self, department: str, facts: tuple[str | None, ...]) -> bytes:
        """Keyed hash of what one department said about a person (ingest compares it with the
        last row the department sent, without decrypting anything)."""
        joined = "\x1f".join("" if fact is None else fact for fact in facts)
        return self.cipher.blind_index(joined, table="person_source", column=department)

    def seal(self, person_id: uuid.UUID, column: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        return self.cipher.seal(value, table=TABLE, column=column, row_id=str(person_id))

    def open(self, row: Any, column: str) -> str | None:
        return self.open_sealed(getattr(row, f"{column}_ct"), column, row.id)

    def open_sealed(
        self, sealed: bytes | None, column: str, person_id: uuid.UUID | str
    ) -> str | None:
        """The clear value of a person's sealed ``column`` (ciphertext ``sealed``)."""
        if sealed is None:
            return None
        try:
            return self.cipher.open(sealed, table=TABLE, column=column, row_id=str(person_id))
        except DecryptionError:
            # Tampered, moved to another row, or sealed with a key this keyring lacks: an event
            # for the security officer. The record names the row, field and key, never a value.
            named = self.cipher.key_id_of(sealed) if len(sealed) > 1 else ""
            # The key id comes from the (possibly tampered) bytes: printable characters only.
            key_id = "".join(c if c.isalnum() or c in "-_.:" else "?" for c in named[:64])
            log.warning(
                "ciphertext failed to open: person %s field %s key %s",
                person_id,
                column,
                key_id,
                extra={"person_id": str(person_id), "column": column, "key_id": key_id},
            )
            raise

    def person_values(self, record: PersonRecord) -> dict[str, Any]:
        """Column values for a person row: ciphertexts and blind indexes, no plaintext."""
        pid = record.person_id
        row_id = str(pid)  # once, not per sealed column: ingest creates a million of these

        def sealed(column: str, value: str | None) -> bytes | None:
            if value is None:
                return None
            return self.cipher.seal(value, table=TABLE, column=column, row_id=row_id)

        return {
            "id": pid,
            "id_number_bidx": self.id_number_index(record.id_number),
            "id_number_ct": sealed("id_number", record.id_number),
            "name_ct": sealed("name", record.name),
            "name_bidx": self.name_index(record.name),
            "phone_bidx": self.phone_index(record.phone) if record.phone else None,
            "phone_ct": sealed("phone", record.phone),
            "address_ct": sealed("address", record.address),
            "gender": record.gender,
            "birth_date": record.birth_date,
            "region_code": record.region_code,
            "province_code": record.region_code[:2],
            "city_code": record.region_code[:4],
            "county_code": record.region_code[:6],
            "household_id": record.household_id,
            "relation": record.relation,
        }
