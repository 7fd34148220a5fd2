"""Encryption at rest. The only code that touches key material.

``Keyring`` loads and creates the keyring file; ``FieldCipher`` seals and opens field values
and computes blind indexes. Neither knows about policies or GraphQL.
"""

from gateway.crypto._cipher import FieldCipher
from gateway.crypto._keys import AuditKey, DataKey, IndexKey, Keyring

__all__ = ["AuditKey", "DataKey", "FieldCipher", "IndexKey", "Keyring"]
