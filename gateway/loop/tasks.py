"""推送任务: what is pushed to a department and must be answered within a deadline (rule 3).

Two kinds (``task.kind``), both due 5 working days after they are opened
(``ProvinceRules.task_working_days``):

    WARNING_REVIEW         a high-cost warning pushed to civil affairs / rural revitalisation of
                           the person's county (000 §1, 001 §4); opened by the warning run;
                           answered RECOGNIZED (as category X) / NOT_ELIGIBLE /
                           NEEDS_MORE_INFORMATION. A recognition creates the relief status:
                           the loop closes.
    IDENTITY_VERIFICATION  a new or changed identity on a list of civil affairs / rural
                           revitalisation, pushed to medical insurance, which checks enrollment
                           and marks the identity (004 §1); opened here when the list's batch
                           completes; answered IDENTITY_MARKED / NOT_ENROLLED /
                           NEEDS_MORE_INFORMATION.

NEEDS_MORE_INFORMATION is not an answer that ends the task: the task waits (WAITING), its
deadline starts again, and a final answer follows. A department sees and answers only its own
tasks inside its jurisdiction (``county_code`` under its region), in SQL; the hub (medical
insurance, ``Loop.otherDepartments``) may list every department's tasks but answers only its own.

    tasks = DepartmentTasks(execute, engine, department="civil_affairs", region="370102",
                            today=clock.today(), rules=rules)
    rows, more = await tasks.page(TaskCriteria(state=TaskState.OVERDUE), first=50, after=None)
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Result,
    Select,
    String,
    Uuid,
    and_,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.mapping import NOT_A_CATEGORY, Feed
from gateway.domain.clock import now_utc
from gateway.domain.departments import CATEGORY_NAMES_ZH, Department
from gateway.domain.errors import BadUserInput
from gateway.domain.workdays import add_working_days, is_working_day
from gateway.loop.config import ProvinceRules
from gateway.storage import outbox
from gateway.storage.models import CostWarning, IngestBatch, Person, ReliefStatus, Task
from gateway.storage.places import refresh_places
from gateway.storage.setwise import dialect_insert, new_uuid

Execute = Callable[[Any], Awaitable[Result[Any]]]

# Free text a clerk writes with an answer (a reason, what is missing): bounded like anomaly notes.
MAX_NOTE_CHARS = 500
# The provenance of a relief status created by an answer (schema: IngestChannel.ANSWER).
ANSWER_CHANNEL = "ANSWER"
ANSWER_FEED = "task_answers"


class TaskKind(StrEnum):
    WARNING_REVIEW = "WARNING_REVIEW"  # 高额费用预警核查 (000 §1, 001 §4)
    IDENTITY_VERIFICATION = "IDENTITY_VERIFICATION"  # 新增身份参保核查与标识 (004 §1)


class TaskStatus(StrEnum):
    """What is stored (``task.status``)."""

    OPEN = "OPEN"
    WAITING = "WAITING"  # answered NEEDS_MORE_INFORMATION: a final answer is still owed
    ANSWERED = "ANSWERED"


class TaskState(StrEnum):
    """What a clerk sees: exactly one per task, deadline first. An unanswered task past its
    due date is OVERDUE, one due within ``due_soon_working_days`` working days (today
    included: due today is not overdue) is DUE_SOON, whether it waits for information or not;
    otherwise it is WAITING or OPEN as stored."""

    OPEN = "OPEN"
    WAITING = "WAITING"
    DUE_SOON = "DUE_SOON"
    OVERDUE = "OVERDUE"
    ANSWERED = "ANSWERED"


class TaskAnswer(StrEnum):
    RECOGNIZED = "RECOGNIZED"  # 已认定为救助对象 (category required)
    NOT_ELIGIBLE = "NOT_ELIGIBLE"  # 经核查不符合认定条件
    IDENTITY_MARKED = "IDENTITY_MARKED"  # 参保核查并完成身份标识
    NOT_ENROLLED = "NOT_ENROLLED"  # 未参保, 已动员参保
    NEEDS_MORE_INFORMATION = "NEEDS_MORE_INFORMATION"  # 需补充材料: the deadline restarts


ANSWERS_BY_KIND: Mapping[TaskKind, frozenset[TaskAnswer]] = {
    TaskKind.WARNING_REVIEW: frozenset(
        {TaskAnswer.RECOGNIZED, TaskAnswer.NOT_ELIGIBLE, TaskAnswer.NEEDS_MORE_INFORMATION}
    ),
    TaskKind.IDENTITY_VERIFICATION: frozenset(
        {TaskAnswer.IDENTITY_MARKED, TaskAnswer.NOT_ENROLLED, TaskAnswer.NEEDS_MORE_INFORMATION}
    ),
}

_ANSWER_NAMES_ZH = {
    TaskAnswer.RECOGNIZED: "已认定",
    TaskAnswer.NOT_ELIGIBLE: "不符合条件",
    TaskAnswer.IDENTITY_MARKED: "已完成身份标识",
    TaskAnswer.NOT_ENROLLED: "未参保 (已动员参保)",
    TaskAnswer.NEEDS_MORE_INFORMATION: "需补充材料",
}
_KIND_NAMES_ZH = {
    TaskKind.WARNING_REVIEW: "高额费用预警核查",
    TaskKind.IDENTITY_VERIFICATION: "救助身份参保核查",
}

NO_SUCH_TASK = "没有这个任务 (编号不存在, 或不是推送给本部门、本辖区的任务)"


# ============================================================================ deadlines
def task_state(status: str, due_on: date, today: date, due_soon_until: date) -> TaskState:
    """The state a clerk sees (see :class:`TaskState`); ``due_soon_until`` is
    :func:`due_soon_until` of ``today``. Mirrors :func:`_state_condition` in SQL."""
    if status == TaskStatus.ANSWERED:
        return TaskState.ANSWERED
    if due_on < today:
        return TaskState.OVERDUE
    if due_on <= due_soon_until:
        return TaskState.DUE_SOON
    return TaskState.WAITING if status == TaskStatus.WAITING else TaskState.OPEN


def due_soon_until(today: date, rules: ProvinceRules) -> date:
    """The last due date that counts as due soon (临期): ``due_soon_working_days`` working
    days after today."""
    return add_working_days(today, rules.due_soon_working_days)


def working_days_left(due_on: date, today: date) -> int:
    """Working days from today to the deadline: 0 when due today, the working days after today
    up to and including ``due_on`` when later; negative when overdue (the working days since the
    deadline, at least 1: a deadline missed on Friday is overdue on Saturday too)."""
    if due_on >= today:
        return _working_days_in(today, due_on)
    return -max(1, _working_days_in(due_on, today))


def _working_days_in(after: date, until: date) -> int:
    """Working days in (``after``, ``until``]."""
    count, day = 0, after
    while day < until:
        day += timedelta(days=1)
        count += is_working_day(day)
    return count


# ============================================================================ opening
def opens_verification(feed: Feed) -> bool:
    """Whether a completed batch of ``feed`` is a list medical insurance must verify (004 §1:
    the identities of civil affairs and rural revitalisation)."""
    return feed.kind == "identities" and feed.department in (
        Department.CIVIL_AFFAIRS,
        Department.RURAL_REVITALIZATION,
    )


def verification_opener(
    rules: ProvinceRules, today: date
) -> Callable[[AsyncConnection, Feed, Sequence[uuid.UUID]], Awaitable[None]]:
    """What follows a completed department file (``adapters.pipeline.Ingestor``'s
    ``on_completed``): for an identities list of civil affairs or rural revitalisation, rule 3
    (004 §1) — the list reaches medical insurance with its deadline — opens the verification
    tasks of the file's rows, once per person, as the completing batch (the last one named;
    the others are earlier runs of the same file that never completed)."""

    async def open_for(
        connection: AsyncConnection, feed: Feed, batches: Sequence[uuid.UUID]
    ) -> None:
        if not opens_verification(feed) or not batches:
            return
        *earlier, completing = batches
        await open_verification_tasks(
            connection, completing, today=today, rules=rules, earlier=earlier
        )
        # the counties the lists were pushed to are places of those people (issue 14)
        await refresh_places(
            connection,
            select(Task.person_id).where(Task.batch_id.in_(list(batches))),
        )

    return open_for


async def open_verification_tasks(
    connection: AsyncConnection,
    batch_id: uuid.UUID,
    *,
    today: date,
    rules: ProvinceRules,
    earlier: Sequence[uuid.UUID] = (),
) -> int:
    """Open one IDENTITY_VERIFICATION task for medical insurance per person whose identity the
    batch added or changed and who holds it now (rows the batch wrote with ``valid_to`` null;
    exits and unchanged rows are not written, or not held, so they open nothing). The category
    is the highest-ranked such identity (it decides the subsidised enrollment, 001 §2); the
    county is the person's. One set-based statement; idempotent (``ux_task_source``). Returns
    the number of tasks opened.

    A file is one list, however many runs it took to load: ``earlier`` names the runs of the
    same file that stopped part-way and that ``batch_id`` completed without continuing them
    (a re-run normally continues the interrupted batch itself, and there are none). Their rows
    are ranked together with the batch's, and each person's one task is the completing batch's
    (``source_key`` ``batch:<batch_id>``, ``batch_id``), as it is when the file loads in one
    run: a person whose identities sit on both sides of an interruption gets one task, for their
    highest identity, not one per run."""
    dialect = connection.dialect.name
    rank = case(dict(rules.ranking), value=ReliefStatus.category, else_=len(rules.ranking))
    ranked = (
        select(
            ReliefStatus.person_id,
            ReliefStatus.category,
            func.row_number()
            .over(partition_by=ReliefStatus.person_id, order_by=(rank, ReliefStatus.category))
            .label("position"),
        )
        .where(ReliefStatus.batch_id.in_([*earlier, batch_id]), ReliefStatus.valid_to.is_(None))
        .subquery()
    )
    rows = (
        select(
            new_uuid(dialect),
            literal(TaskKind.IDENTITY_VERIFICATION.value, String()),
            literal(Department.MEDICAL_INSURANCE.value, String()),
            Person.county_code,
            Person.id,
            literal(f"batch:{batch_id}", String()),
            literal(batch_id, Uuid()),
            ranked.c.category,
            literal(today, Date()),
            literal(add_working_days(today, rules.task_working_days), Date()),
            literal(TaskStatus.OPEN.value, String()),
        )
        .select_from(ranked.join(Person, Person.id == ranked.c.person_id))
        .where(ranked.c.position == 1)  # (also SQLite's upsert-after-SELECT needs a WHERE)
    )
    columns = [
        "id", "kind", "department", "county_code", "person_id", "source_key", "batch_id",
        "category", "opened_on", "due_on", "status",
    ]  # fmt: skip
    statement = (
        dialect_insert(dialect, Task)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["department", "source_key", "person_id"])
    )
    result = await connection.execute(statement)
    await outbox.emit_tasks_pushed(
        connection,
        Task.department == Department.MEDICAL_INSURANCE.value,
        Task.source_key == f"batch:{batch_id}",
    )
    return max(int(result.rowcount or 0), 0)


# ============================================================================ categories
def recognisable_categories(
    feeds: Mapping[tuple[str, str], Feed], department: str
) -> frozenset[str]:
    """The categories ``department`` recognises: those its identity feeds map labels to
    (civil affairs: 特困, 低保, 低保边缘 …; rural revitalisation: 返贫致贫, 监测对象, 脱贫).
    One source of truth with the lists the department sends (adapters/mappings)."""
    found: set[str] = set()
    for feed in _identity_feeds(feeds, department):
        found.update(feed.labels.get("category", {}).values())
    found.discard(NOT_A_CATEGORY)
    return frozenset(found)


def _replaced_by(
    feeds: Mapping[tuple[str, str], Feed], department: str, category: str
) -> frozenset[str]:
    """The held categories a recognition of ``category`` ends (身份变更, and a re-recognition of
    the same category), as a row of the department's list would (adapters.apply)."""
    replaced = {category}
    for feed in _identity_feeds(feeds, department):
        replaced.update(c for group in feed.exclusive for c in group if feed.replaces(category, c))
    return frozenset(replaced)


def _identity_feeds(feeds: Mapping[tuple[str, str], Feed], department: str) -> Iterable[Feed]:
    return (
        feed
        for (owner, _), feed in sorted(feeds.items())
        if owner == department and feed.kind == "identities"
    )


# ============================================================================ reading
@dataclass(frozen=True, slots=True)
class TaskCriteria:
    """A validated ``TaskFilter``. ``department`` only for callers who may see other
    departments' tasks (else the caller's own department is the only one)."""

    state: TaskState | None = None
    kind: TaskKind | None = None
    department: str | None = None
    region_prefix: str | None = None
    due_before: date | None = None  # inclusive


@dataclass(frozen=True, slots=True)
class AnsweredTask:
    row: Any
    relief_status_created: bool


_TASK_COLUMNS = (
    *Task.__table__.c,
    CostWarning.rule.label("warning_rule"),
    CostWarning.month.label("warning_month"),
)


class DepartmentTasks:
    """One caller's tasks: its department's (or, with ``other_departments``, every
    department's) inside its jurisdiction. Reads run on the request's connection; an answer
    writes in its own transaction."""

    def __init__(
        self,
        execute: Execute,
        engine: AsyncEngine,
        *,
        department: str,
        region: str,
        today: date,
        rules: ProvinceRules,
        other_departments: bool = False,
    ) -> None:
        self._execute = execute
        self._engine = engine
        self._department = department
        self._region = region
        self._today = today
        self._rules = rules
        self._other_departments = other_departments
        self.due_soon_until = due_soon_until(today, rules)

    def state(self, row: Any) -> TaskState:
        return task_state(row.status, row.due_on, self._today, self.due_soon_until)

    # ---------------------------------------------------------------- scope
    def _visible(self) -> ColumnElement[bool]:
        jurisdiction = Task.county_code.like(self._region + "%")
        if self._other_departments:
            return jurisdiction
        return and_(Task.department == self._department, jurisdiction)

    def _answerable(self) -> ColumnElement[bool]:
        # Only the department a task is pushed to answers it, whoever else may read it.
        return and_(Task.department == self._department, Task.county_code.like(self._region + "%"))

    def _state_condition(self, state: TaskState) -> ColumnElement[bool]:
        unanswered = Task.status != TaskStatus.ANSWERED.value
        later = Task.due_on > self.due_soon_until
        if state is TaskState.ANSWERED:
            return Task.status == TaskStatus.ANSWERED.value
        if state is TaskState.OVERDUE:
            return and_(unanswered, Task.due_on < self._today)
        if state is TaskState.DUE_SOON:
            return and_(unanswered, Task.due_on >= self._today, Task.due_on <= self.due_soon_until)
        return and_(Task.status == state.value, later)  # OPEN / WAITING

    def _filtered(self, stmt: Select[Any], criteria: TaskCriteria) -> Select[Any]:
        stmt = stmt.where(self._visible())
        if criteria.state is not None:
            stmt = stmt.where(self._state_condition(criteria.state))
        if criteria.kind is not None:
            stmt = stmt.where(Task.kind == criteria.kind.value)
        if criteria.department is not None:
            stmt = stmt.where(Task.department == criteria.department)
        if criteria.region_prefix is not None:
            stmt = stmt.where(Task.county_code.like(criteria.region_prefix + "%"))
        if criteria.due_before is not None:
            stmt = stmt.where(Task.due_on <= criteria.due_before)
        return stmt

    @staticmethod
    def _with_warning(stmt: Select[Any]) -> Select[Any]:
        return stmt.select_from(Task).outerjoin(CostWarning, CostWarning.id == Task.warning_id)

    # ---------------------------------------------------------------- listing
    async def page(
        self, criteria: TaskCriteria, *, first: int, after: tuple[date, uuid.UUID] | None
    ) -> tuple[list[Any], bool]:
        """Most urgent first: by due date, then id (a stable keyset)."""
        stmt = self._filtered(self._with_warning(select(*_TASK_COLUMNS)), criteria)
        if after is not None:
            due, task_id = after
            stmt = stmt.where(or_(Task.due_on > due, and_(Task.due_on == due, Task.id > task_id)))
        stmt = stmt.order_by(Task.due_on, Task.id).limit(first + 1)
        rows = list((await self._execute(stmt)).all())
        return rows[:first], len(rows) > first

    async def one(self, task_id: uuid.UUID) -> Any | None:
        """One task in the caller's view (absent and out of scope look the same)."""
        stmt = self._with_warning(select(*_TASK_COLUMNS)).where(Task.id == task_id, self._visible())
        return (await self._execute(stmt)).first()

    async def acknowledge(self, task_ids: Sequence[uuid.UUID], *, by: str) -> list[uuid.UUID]:
        """已查阅 (issue 18 item 4): the department a task is pushed to has opened it. Only that
        department's people leave the receipt (the hub reading every department's tasks does
        not); the first opening counts, later ones change nothing. Returns the tasks whose
        receipt this call wrote. Its own transaction: the request's connection only reads."""
        if not task_ids:
            return []
        async with self._engine.begin() as connection:
            marked = await connection.execute(
                update(Task)
                .where(Task.id.in_(list(task_ids)), self._answerable(), Task.read_at.is_(None))
                .values(read_at=now_utc(), read_by=by)
                .returning(Task.id)
            )
            return list(marked.scalars())

    async def count(self, criteria: TaskCriteria) -> int:
        stmt = self._filtered(select(func.count()).select_from(Task), criteria)
        return int((await self._execute(stmt)).scalar_one())

    def warning_description(self, rule: str) -> str:
        """The configured description of a warning rule (the code when no longer configured)."""
        for configured in self._rules.warnings:
            if configured.rule == rule:
                return configured.description
        return rule

    # ---------------------------------------------------------------- answering
    async def answer(
        self,
        task_id: uuid.UUID,
        answer: TaskAnswer,
        *,
        category: str | None,
        note: str | None,
        answered_by: str,
        feeds: Mapping[tuple[str, str], Feed],
    ) -> AnsweredTask:
        """Answer one of the caller's own tasks, in one transaction: the task, and for
        RECOGNIZED the relief status (with an ``ANSWER`` batch as its provenance) and the
        verification task it opens for medical insurance. Refusals change nothing."""
        note = _checked_note(note)
        if category is not None and answer is not TaskAnswer.RECOGNIZED:
            raise BadUserInput("只有“已认定 (RECOGNIZED)”需要填写认定类别 category")
        if answer is TaskAnswer.RECOGNIZED and category is None:
            raise BadUserInput("答复“已认定 (RECOGNIZED)”时须填写认定的救助类别 category")
        if answer is TaskAnswer.NEEDS_MORE_INFORMATION and note is None:
            raise BadUserInput("答复“需补充材料”时须在 note 中说明需要补充什么")
        today = self._today
        async with self._engine.begin() as connection:
            locked = select(*Task.__table__.c).where(Task.id == task_id, self._answerable())
            if connection.dialect.name == "postgresql":
                locked = locked.with_for_update()  # two clerks answering at once: one wins
            task = (await connection.execute(locked)).first()
            if task is None:
                raise BadUserInput(NO_SUCH_TASK)
            if task.status == TaskStatus.ANSWERED:
                done = _ANSWER_NAMES_ZH.get(TaskAnswer(task.answer), task.answer)
                raise BadUserInput(f"该任务已于 {task.answered_on} 答复“{done}”, 不能再次答复")
            kind = TaskKind(task.kind)
            if answer not in ANSWERS_BY_KIND[kind]:
                allowed = "、".join(
                    f"{a.value} ({_ANSWER_NAMES_ZH[a]})" for a in sorted(ANSWERS_BY_KIND[kind])
                )
                raise BadUserInput(f"“{_KIND_NAMES_ZH[kind]}”任务只能答复: {allowed}")
            if category is not None:
                recognisable = recognisable_categories(feeds, self._department)
                if category not in recognisable:
                    names = "、".join(CATEGORY_NAMES_ZH[c] for c in sorted(recognisable))
                    raise BadUserInput(
                        f"本部门不认定“{CATEGORY_NAMES_ZH.get(category, category)}”; "
                        f"可认定的类别: {names or '无'}"
                    )
            waiting = answer is TaskAnswer.NEEDS_MORE_INFORMATION
            values: dict[str, Any] = {
                "status": (TaskStatus.WAITING if waiting else TaskStatus.ANSWERED).value,
                "answer": answer.value,
                "answer_category": category,
                "answered_on": today,
                "answered_by": answered_by,
                "note": note,
            }
            if waiting:  # the department asked for more: the 5 working days start again
                values["due_on"] = add_working_days(today, self._rules.task_working_days)
            await connection.execute(
                update(Task).where(Task.id == task_id, Task.status == task.status).values(**values)
            )
            created = False
            if answer is TaskAnswer.RECOGNIZED:
                assert category is not None
                status_id, created = await self._recognise(
                    connection,
                    task,
                    category,
                    answered_by,
                    _replaced_by(feeds, self._department, category),
                )
                await connection.execute(
                    update(Task).where(Task.id == task_id).values(relief_status_id=status_id)
                )
            stmt = self._with_warning(select(*_TASK_COLUMNS)).where(
                Task.id == task_id, self._answerable()
            )
            row = (await connection.execute(stmt)).one()
            await outbox.emit_rows(connection, await self._answer_events(connection, row, created))
        return AnsweredTask(row, created)

    async def _answer_events(
        self, connection: AsyncConnection, task: Any, created: bool
    ) -> list[outbox.Event]:
        """Who hears an answer (issue 18): the answering department itself, and medical
        insurance, which raised the warning, for a warning review; the department whose list
        opened it, for an identity verification. A recognition also reaches medical insurance
        as a new identity (004 §1)."""
        if task.kind == TaskKind.WARNING_REVIEW.value:
            pusher: str | None = Department.MEDICAL_INSURANCE.value
        elif task.batch_id is not None:
            pusher = (
                await connection.execute(
                    select(IngestBatch.department).where(IngestBatch.id == task.batch_id)
                )
            ).scalar()
        else:
            pusher = None
        now = now_utc()
        # The answering department hears it too: its other clerks' worklists and its own system
        # follow answers given in the gateway.
        events = [outbox.task_answered(task, audience=self._department, occurred_at=now)]
        if pusher is not None and pusher != self._department:
            events.append(outbox.task_answered(task, audience=pusher, occurred_at=now))
        if created and task.relief_status_id is not None:
            events.append(
                outbox.Event(
                    kind=outbox.EventKind.IDENTITY_RECOGNISED,
                    audience=Department.MEDICAL_INSURANCE.value,
                    county_code=task.county_code,
                    person_id=task.person_id,
                    subject_type="relief_status",
                    subject_id=str(task.relief_status_id),
                    dedupe_key=f"{outbox.EventKind.IDENTITY_RECOGNISED.value}:"
                    f"{task.relief_status_id}",
                    facts={"category": task.answer_category, "department": self._department},
                )
            )
        return events

    async def _recognise(
        self,
        connection: AsyncConnection,
        task: Any,
        category: str,
        answered_by: str,
        replaced: frozenset[str],
    ) -> tuple[int, bool]:
        """The relief status a recognition creates, as a one-row list of the answering
        department would: recognised, valid and listed from today, ending the held identities it
        replaces (身份变更). The same identity already recognised today is linked, not repeated
        (``ux_relief_status_source``). Returns the status id and whether it was created."""
        today, department = self._today, self._department
        key = (
            ReliefStatus.person_id == task.person_id,
            ReliefStatus.source_department == department,
            ReliefStatus.category == category,
            ReliefStatus.recognized_on == today,
            ReliefStatus.county_code == task.county_code,
        )
        existing = (await connection.execute(select(ReliefStatus.id).where(*key))).scalar()
        if existing is not None:
            return int(existing), False
        batch_id, now = uuid.uuid4(), now_utc()
        await connection.execute(
            insert(IngestBatch).values(
                id=batch_id,
                department=department,
                feed=ANSWER_FEED,
                channel=ANSWER_CHANNEL,
                file_name=None,
                content_sha256=None,
                region=task.county_code,
                submitted_by=answered_by,
                received_at=now,
                finished_at=now,
                status="COMPLETED",
                rows_total=1,
                rows_accepted=1,
                rows_rejected=0,
                rows_unchanged=0,
                added=0,
                exited=0,
                identity_changed=0,
                updated=0,
                unmatched=0,
                anomalies_opened=0,
            )
        )
        provenance = {"batch_id": batch_id, "source_line": 1, "received_at": now}
        yesterday = today - timedelta(days=1)
        ended = await connection.execute(
            update(ReliefStatus)
            .where(
                ReliefStatus.person_id == task.person_id,
                ReliefStatus.source_department == department,
                ReliefStatus.category.in_(sorted(replaced)),
                ReliefStatus.valid_to.is_(None),
                ReliefStatus.recognized_on < today,
            )
            .values(
                valid_to=case(
                    (ReliefStatus.valid_from > yesterday, ReliefStatus.valid_from),
                    else_=literal(yesterday, Date()),
                ),
                exit_listed_on=today,
                **provenance,
            )
            .returning(ReliefStatus.category)
        )
        ended_categories = set(ended.scalars())
        inserted = await connection.execute(
            dialect_insert(connection.dialect.name, ReliefStatus)
            .values(
                person_id=task.person_id,
                category=category,
                source_department=department,
                recognized_on=today,
                valid_from=today,
                valid_to=None,
                listed_on=today,
                exit_listed_on=None,
                # 认定地: the county the task was pushed to, whose department recognised it
                county_code=task.county_code,
                **provenance,
            )
            .on_conflict_do_nothing(
                index_elements=[
                    "person_id",
                    "source_department",
                    "category",
                    "recognized_on",
                    "county_code",
                ]
            )
            .returning(ReliefStatus.id)
        )
        status_id = inserted.scalar()
        created = status_id is not None
        if status_id is None:  # recognised by a concurrent answer a moment ago: link it
            status_id = (await connection.execute(select(ReliefStatus.id).where(*key))).scalar_one()
            counts = {"rows_unchanged": 1}
        elif ended_categories - {category}:
            counts = {"identity_changed": 1}  # 身份变更, as adapters.apply counts it
        elif ended_categories:
            counts = {"updated": 1}  # re-recognised
        else:
            counts = {"added": 1}
        await connection.execute(
            update(IngestBatch).where(IngestBatch.id == batch_id).values(**counts)
        )
        # 004 §1: a new identity reaches medical insurance like any list: verify and mark it.
        await open_verification_tasks(connection, batch_id, today=today, rules=self._rules)
        await refresh_places(connection, [task.person_id])  # the new identity place (issue 14)
        return int(status_id), created


def _checked_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise BadUserInput(f"note 最多 {MAX_NOTE_CHARS} 字")
    return note or None


__all__ = [
    "ANSWERS_BY_KIND",
    "MAX_NOTE_CHARS",
    "NO_SUCH_TASK",
    "AnsweredTask",
    "DepartmentTasks",
    "TaskAnswer",
    "TaskCriteria",
    "TaskKind",
    "TaskState",
    "TaskStatus",
    "due_soon_until",
    "open_verification_tasks",
    "opens_verification",
    "recognisable_categories",
    "task_state",
    "working_days_left",
]


# ============================================================================ operations
async def backlog_by_department(
    connection: AsyncConnection, today: date
) -> list[tuple[str, int, int]]:
    """``(department, open, overdue)`` for tasks not answered yet: one grouped query, for the
    ``relief_task_backlog`` gauge (GET /metrics). WAITING counts as open: an answer is owed."""
    overdue = func.sum(case((Task.due_on < today, 1), else_=0))
    rows = await connection.execute(
        select(Task.department, func.count(), overdue)
        .where(Task.status != TaskStatus.ANSWERED.value)
        .group_by(Task.department)
        .order_by(Task.department)
    )
    return [(str(dept), int(count), int(late or 0)) for dept, count, late in rows]
