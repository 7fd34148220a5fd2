"""CPU per audit append with and without the entry MAC (issue 16 item 6).

    .venv/bin/python bench/audit_mac_bench.py            # → bench/results/audit_mac_YYYYMMDD.md
    .venv/bin/python bench/audit_mac_bench.py --rounds 7 --appends 300

What is timed is ``gateway.storage.audit_chain.append_entries`` — what the group-commit
``AuditWriter`` runs once per group: the chain lock, the head read, hashing each entry, (with
the MAC) one HMAC per entry from a keyed state prepared once, the insert and the commit. Groups
of 1 (a quiet gateway: one request per commit) and of 32 (under load, many requests share a
commit). SQLite (a file in a temporary directory) and PostgreSQL (a throw-away cluster from
``tests.pgcluster``, or ``--postgres-url``).

The two modes alternate append by append (no MAC, MAC; the order swapped every round), so a
change of machine load touches both alike; the figure is the median over rounds of this
process's CPU µs (``time.process_time``) per entry, wall µs beside it. On PostgreSQL the
server's own CPU is not in the figure (it is the same with and without the MAC: the MAC is
computed here; the row grows by two short text columns). The HMAC alone (HMAC-SHA-256 and
HMAC-SM3) is timed on its own for scale.

The issue's figure "person-lookup CPU per request before and after the MAC" comes from
``bench/peer_compare.py`` (run by the lead on the peer rig); this isolates the audit part.
"""

from __future__ import annotations

import argparse
import asyncio
import platform as host
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from gateway.crypto import AuditMac, Keyring  # noqa: E402
from gateway.storage.audit_chain import append_entries  # noqa: E402
from gateway.storage.engine import make_engine, make_sessionmaker  # noqa: E402
from gateway.storage.migrate import upgrade_to_head  # noqa: E402
from gateway.storage.models import AuditEntry  # noqa: E402

GROUPS = (1, 32)
# database, group, CPU µs/entry per round without and with the MAC, median wall µs of each
Row = tuple[str, int, list[float], list[float], float, float]
SUITES = {"HMAC-SHA-256": "aes-256-gcm+hmac-sha256", "HMAC-SM3": "sm4-gcm+hmac-sm3"}


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return host.processor() or "unknown"


def _entry(n: int) -> AuditEntry:
    """An entry of the size a person lookup writes (a few people, four fields)."""
    return AuditEntry(
        occurred_at=datetime.now(UTC),
        request_id=str(uuid.uuid4()),
        subject=f"clerk-{n % 50}",
        department="medical_insurance",
        level="county",
        region="370102",
        purpose="benefit_settlement",
        operation="PersonLookup",
        policy_version=3,
        person_ids=str([str(uuid.uuid4()) for _ in range(3)]).replace("'", '"'),
        fields='{"Person.idNumber":"mask","Person.name":"read","Person.phone":"mask",'
        '"Person.reliefStatuses":"read"}',
    )


async def measure(
    engine: AsyncEngine, macs: AuditMac, group: int, appends: int, *, keyed_first: bool
) -> dict[bool, tuple[float, float]]:
    """CPU and wall µs per entry without (False) and with (True) the MAC, over ``appends``
    appends of ``group`` entries each; the two modes alternate append by append, so load
    that comes and goes touches both alike."""
    sessions = make_sessionmaker(engine)
    spent = {False: [0.0, 0.0], True: [0.0, 0.0]}
    order = (True, False) if keyed_first else (False, True)
    for index in range(appends):
        for keyed in order:
            batch = [_entry(index * group + j) for j in range(group)]
            cpu, wall = time.process_time(), time.perf_counter()
            async with sessions() as session:
                await append_entries(session, batch, macs=macs if keyed else None)
            spent[keyed][0] += time.process_time() - cpu
            spent[keyed][1] += time.perf_counter() - wall
    entries = group * appends
    return {mode: (c * 1e6 / entries, w * 1e6 / entries) for mode, (c, w) in spent.items()}


def hmac_alone(macs: AuditMac, count: int = 50_000) -> float:
    digest = "ab" * 32
    cpu = time.process_time()
    for _ in range(count):
        macs.sign("entry", digest.encode())
    return (time.process_time() - cpu) * 1e6 / count


async def backend_rows(name: str, url: str, macs: AuditMac, rounds: int, appends: int) -> list[Row]:
    engine = make_engine(url)
    try:
        await upgrade_to_head(engine)
        await measure(engine, macs, 1, 20, keyed_first=True)  # warm: connections, caches
        rows = []
        for group in GROUPS:
            plain: list[tuple[float, float]] = []
            keyed: list[tuple[float, float]] = []
            count = max(appends // group, 10) if group > 1 else appends
            for index in range(rounds):
                spent = await measure(engine, macs, group, count, keyed_first=index % 2 == 1)
                plain.append(spent[False])
                keyed.append(spent[True])
            rows.append(
                (
                    name,
                    group,
                    [c for c, _ in plain],
                    [c for c, _ in keyed],
                    statistics.median(w for _, w in plain),
                    statistics.median(w for _, w in keyed),
                )
            )
            print(f"{name} group {group}: done", file=sys.stderr)
        return rows
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--appends", type=int, default=200, help="appends per measurement")
    parser.add_argument(
        "--postgres-url", default=None, help="an existing database (else a throw-away cluster)"
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        keyring = Keyring.generate("aes-256-gcm+hmac-sha256")
        macs = AuditMac(keyring)
        alone = {
            algorithm: hmac_alone(AuditMac(Keyring.generate(suite)))
            for algorithm, suite in SUITES.items()
        }
        rows = await backend_rows(
            "SQLite",
            f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
            macs,
            args.rounds,
            args.appends,
        )
        if not args.skip_postgres:
            if args.postgres_url:
                rows += await backend_rows(
                    "PostgreSQL", args.postgres_url, macs, args.rounds, args.appends
                )
            else:
                from tests.pgcluster import ThrowawayCluster

                with ThrowawayCluster() as cluster:
                    url = cluster.create_database(f"audit_mac_{uuid.uuid4().hex[:8]}")
                    rows += await backend_rows("PostgreSQL", url, macs, args.rounds, args.appends)
    report = render(rows, alone, args, load_before, loadavg())
    out = args.out or ROOT / "bench" / "results" / f"audit_mac_{datetime.now(UTC):%Y%m%d}.md"
    out.write_text(report, encoding="utf-8")
    print(report)
    print(f"→ {out}", file=sys.stderr)


def render(
    rows: list[Row],
    alone: dict[str, float],
    args: argparse.Namespace,
    load_before: str,
    load_after: str,
) -> str:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    command = "    .venv/bin/python bench/audit_mac_bench.py " + " ".join(sys.argv[1:])
    lines = [
        "# Audit append: CPU per entry with and without the entry MAC "
        f"({datetime.now(UTC):%Y-%m-%d})",
        "",
        "Command:",
        "",
        command.rstrip(),
        "",
        f"Commit {commit}; {cpu_model()}, Python {host.python_version()}; "
        f"load average before `{load_before}`, after `{load_after}` (2 cores shared with other "
        "work: compare the columns of one row, not rows across runs).",
        f"{args.rounds} rounds, modes alternated append by append; {args.appends} appends per "
        "measurement for groups of 1 (for groups of 32: that many entries over fewer appends, "
        "at least 10). Median over rounds; this process's CPU (`time.process_time`).",
        "",
        "| database | group | CPU µs/entry, no MAC (min–max) | CPU µs/entry, MAC (min–max) | "
        "Δ CPU µs (medians) | "
        "wall µs/entry, no MAC | wall µs/entry, MAC |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, group, plain, keyed, wall_plain, wall_keyed in rows:
        cpu_plain, cpu_keyed = statistics.median(plain), statistics.median(keyed)
        lines.append(
            f"| {name} | {group} | {cpu_plain:.1f} ({min(plain):.0f}–{max(plain):.0f}) | "
            f"{cpu_keyed:.1f} ({min(keyed):.0f}–{max(keyed):.0f}) | "
            f"{cpu_keyed - cpu_plain:+.1f} | {wall_plain:.1f} | {wall_keyed:.1f} |"
        )
    lines += [
        "",
        "The HMAC alone (`AuditMac.sign`, keyed state copied per entry): "
        + ", ".join(f"{name} {value:.2f} µs" for name, value in alone.items())
        + ".",
        "",
        "The MAC is one HMAC of a 64-byte hash per entry; the append's cost is the lock, the "
        "insert and the commit. The person-lookup figure per request is bench/peer_compare.py's.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
