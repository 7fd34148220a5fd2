"""Validated rows → stored facts: what each row means against what is already stored.

One chunk of rows is applied inside one transaction (``adapters.pipeline`` owns it): the chunk's
people, their statuses, enrollments, settlements and open anomalies are read in a handful of
set-based queries, every row is classified in memory, and the changes are written in bulk
(``COPY`` on PostgreSQL). An accepted row is therefore stored with all its parts or not at all,
and nothing here runs a query per row.

Classification (DOMAIN.md rule 2): a row is 新增 (ADDED), 退出 (EXITED), 身份变更 (CHANGED),
信息更新 (UPDATED), 无变化 (UNCHANGED), or, for a vital event about someone the gateway does not
hold, 未匹配 (UNMATCHED). Re-sending a row yields UNCHANGED and writes nothing, which is what
makes loading the same file twice change nothing.

Cross-source checks open anomalies for the department that must verify (rule 4, 回传), due in
10 Chinese working days (rule 3): a name that differs from the one on record, a stated birth
date that contradicts the ID number, a person reported dead who still holds an identity or an
active enrollment, and an identity exited by one department that another still treats as held.

The write side is split by record kind, one module each, combined into :class:`ChunkApplier`
(``chunk``): ``identities`` (relief statuses from the civil-affairs and rural-revitalisation
lists), ``enrollments`` (medical insurance), ``settlements`` (and the cost burden rolled up from
them) and ``vital_events`` (deaths and births). What they share is in ``people`` (matching rows
to stored people, what each department said about them, their statuses), ``anomalies`` (opening
and closing anomalies, and the checks several kinds raise) and ``_shared`` (the batch context,
outcomes, per-chunk state, provenance and the bulk writer).
"""

from __future__ import annotations

from adapters.apply._shared import (
    ANOMALY_DUE_WORKING_DAYS,
    NOT_IN_SCOPE,
    AnomalyKind,
    BatchContext,
    ChunkResult,
    Outcome,
)
from adapters.apply.chunk import ChunkApplier

__all__ = [
    "ANOMALY_DUE_WORKING_DAYS",
    "NOT_IN_SCOPE",
    "AnomalyKind",
    "BatchContext",
    "ChunkApplier",
    "ChunkResult",
    "Outcome",
]
