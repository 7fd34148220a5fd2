"""Time from `bash scripts/demo` (fresh data dir) to the first task answered in /workbench
(issue 15 figure): the demo as a new user starts it, then headless Chromium (Debian's) signs in
with the printed county civil-affairs token and answers the first open task "not eligible".

    .venv/bin/python bench/demo_first_answer.py [--port 18931]

Prints the seconds to /readyz, to the workbench's first task list, and to the answer shown.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=18931)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="demo-first-answer-"))
    shutil.rmtree(data)
    started = time.perf_counter()
    demo = subprocess.Popen(
        ["bash", "scripts/demo", "--data-dir", str(data), "--port", str(args.port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")},
    )
    printed: list[str] = []
    base = f"http://127.0.0.1:{args.port}"
    try:
        assert demo.stdout is not None
        token = None
        while token is None:
            line = demo.stdout.readline()
            if not line:
                raise SystemExit("demo ended:\n" + "".join(printed))
            printed.append(line)
            if "民政局 县级" in line:
                token = re.search(r"令牌: (\S+)", demo.stdout.readline()).group(1)  # type: ignore[union-attr]
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        ready = time.perf_counter() - started
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            page = browser.new_page()
            page.goto(base + "/workbench")
            page.get_by_label("访问令牌").fill(token)
            page.get_by_role("button", name="登录").click()
            card = page.locator("#tasks .task.card").filter(has=page.get_by_label("答复结果")).first
            expect(card).to_be_visible(timeout=30_000)
            listed = time.perf_counter() - started
            answers = page.locator("#tasks .task.card .answer")
            before = answers.count()
            card.get_by_label("答复结果").select_option("NOT_ELIGIBLE")
            card.get_by_label("答复说明").fill("入户核实, 不符合条件")
            card.get_by_role("button", name="提交答复").click()
            expect(answers).to_have_count(before + 1, timeout=30_000)
            answered = time.perf_counter() - started
            browser.close()
        load = os.getloadavg()
        print("".join(line for line in printed if "就绪" in line or "正在生成" in line), end="")
        print(
            f"demo → ready {ready:.1f} s; → first task listed {listed:.1f} s;"
            f" → first task answered {answered:.1f} s (load {load[0]:.2f})"
        )
    finally:
        demo.terminate()
        demo.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
