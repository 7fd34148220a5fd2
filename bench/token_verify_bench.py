"""Token verification cost per request: HS256 (the gateway's own key), RS256, ES256 and SM2 (the
identity platform's keys, fetched over loopback from tests.issuer_support's real issuer), with
the verified-token cache warm (a system reuses its token: the realistic path) and cold (every
token new: signature, claims and mapping checked each time).

    .venv/bin/python bench/token_verify_bench.py     # → bench/results/token_verify_YYYYMMDD.md
    .venv/bin/python bench/token_verify_bench.py --rounds 7 --cold 400 --warm 20000

One session, one process: the algorithms and the warm/cold paths alternate within each round
(HS256, RS256, ES256, SM2 in a rotated order), so a change of machine load touches them all alike;
the figure is the median over rounds of CPU µs per verification (``time.process_time``), wall
µs beside it. Tokens are minted before the clock starts. What is timed is
``await TokenService.verify(token)``: the request path's call (iss dispatch, cache, signature,
claims, claim mapping).

SM2 tokens are signed by gmssl (the test issuer) and verified by the gateway with pysmx in a
worker thread (``time.process_time`` counts every thread of the process); its cold rounds use a
tenth of the tokens (each costs milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as host
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cryptography  # noqa: E402
import jwt  # noqa: E402

from gateway.runtime.issuers import Issuer, IssuerConfig  # noqa: E402
from gateway.runtime.tokens import TokenService  # noqa: E402
from tests.issuer_support import TestIssuer  # noqa: E402

PERSON = {"dept": "medical_insurance", "level": "county", "region": "370102", "roles": []}
ALGORITHMS = ("HS256", "RS256", "ES256", "SM2")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return host.processor() or "unknown"


async def measure(service: TokenService, tokens: list[str], repeat: int) -> tuple[float, float]:
    """CPU and wall µs per verification over ``tokens`` (each ``repeat`` times)."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        for token in tokens:
            await service.verify(token)
    count = repeat * len(tokens)
    return (
        (time.process_time() - cpu) / count * 1e6,
        (time.perf_counter() - wall) / count * 1e6,
    )


async def run(
    rounds: int, cold: int, warm: int
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with TestIssuer(sm2=True) as platform:
        config = IssuerConfig(
            name="bench",
            issuer=platform.url,
            audience=(platform.audience,),
            jwks_url=platform.jwks_url,
            leeway_seconds=30,
            algorithms=("RS256", "ES256", "SM2"),
        )
        service = TokenService(b"bench-token-key-" * 4, "relief-gateway", issuers=[Issuer(config)])
        await service.start()

        def mint(alg: str, subject: str) -> str:
            if alg == "HS256":
                return service.mint(
                    subject=subject, dept="medical_insurance", level="county", region="370102"
                )
            return platform.mint({"sub": subject, **PERSON}, alg=alg)

        for round_number in range(rounds):
            shift = round_number % len(ALGORITHMS)
            order = ALGORITHMS[shift:] + ALGORITHMS[:shift]
            for alg in order:
                # Cold: tokens never seen (the cache holds up to 4096 and is emptied when full,
                # so it is emptied here first: every verification pays the full check).
                count = max(3, cold // 10) if alg == "SM2" else cold
                fresh = [mint(alg, f"cold-{round_number}-{n}") for n in range(count)]
                service._verified.clear()
                results.setdefault((alg, "cold"), []).append(await measure(service, fresh, 1))
                # Warm: one token, used again and again (a department system's request loop).
                reused = mint(alg, f"warm-{round_number}")
                await service.verify(reused)
                results.setdefault((alg, "warm"), []).append(await measure(service, [reused], warm))
    return results


def report(
    results: dict[tuple[str, str], list[tuple[float, float]]],
    *,
    command: str,
    load_before: str,
    load_after: str,
    rounds: int,
    cold: int,
    warm: int,
) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    lines = [
        f"# Token verification cost per request ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Command: `{command}`  ",
        f"Commit: {commit}; Python {host.python_version()}, PyJWT {jwt.__version__}, "
        f"cryptography {cryptography.__version__}; {cpu_model()}, {_cores()} cores  ",
        f"Load (`cat /proc/loadavg`) before: `{load_before}`; after: `{load_after}`  ",
        f"Rounds: {rounds}, alternated ({', '.join(ALGORITHMS)} rotated each round); cold: {cold} "
        f"new tokens per algorithm per round; warm: one token verified {warm} times per round.",
        "",
        "`await TokenService.verify(token)` as the request path calls it. Median over rounds "
        "(min-max in brackets), µs per verification.",
        "",
        "| algorithm | cache | CPU µs (median) | CPU µs range | wall µs (median) |",
        "|---|---|---:|---:|---:|",
    ]
    for (alg, path), samples in results.items():
        cpu = [sample[0] for sample in samples]
        wall = [sample[1] for sample in samples]
        lines.append(
            f"| {alg} | {path} | {statistics.median(cpu):.1f} | "
            f"{min(cpu):.1f}-{max(cpu):.1f} | {statistics.median(wall):.1f} |"
        )
    lines += [
        "",
        "Warm is what a department system pays (it reuses its token until it expires): a "
        "dictionary lookup and the expiry check. Cold is the first use of each token: the "
        "signature (RSA-2048, ECDSA P-256 or SM2 verification, or one HMAC-SHA-256), the "
        "claims, the issuer's claim mapping and the three-administrator-role check.",
    ]
    lines += [
        "",
        "SM2: tokens signed by gmssl (the test issuer), verified by the gateway with pysmx "
        "(snowland-smx, pure Python) in a worker thread, a tenth of the cold tokens per round.",
    ]
    return "\n".join(lines) + "\n"


def _cores() -> int:
    return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", type=int, default=300, help="new tokens per alg and round")
    parser.add_argument("--warm", type=int, default=20000, help="uses of one token per round")
    parser.add_argument("--out", type=Path, default=None)
    arguments = parser.parse_args()
    command = ".venv/bin/python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    load_before = loadavg()
    results = asyncio.run(run(arguments.rounds, arguments.cold, arguments.warm))
    text = report(
        results,
        command=command,
        load_before=load_before,
        load_after=loadavg(),
        rounds=arguments.rounds,
        cold=arguments.cold,
        warm=arguments.warm,
    )
    out = (
        arguments.out or ROOT / "bench" / "results" / f"token_verify_{datetime.now(UTC):%Y%m%d}.md"
    )
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
