"""The CLI's frictions of issue 15, one test each: commands printed as they work, the demo's
port checked before anything is printed, arguments validated before any side effect, region
codes checked against the region table, and argparse's own messages in Chinese."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.app import main
from gateway.cli.serving import invocation

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".venv" / "bin" / "relief-gateway"
README = ROOT / "README.md"
# argparse's English, as Python 3.11-3.13 words it: none may reach a user.
ENGLISH = re.compile(
    r"usage:|error:|options:|positional arguments|show this help|the following arguments"
    r"|invalid choice|unrecognized arguments|invalid \w+ value|expected one argument"
)
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIEF_")}
    env["RELIEF_DATA_DIR"] = str(data_dir)
    env["RELIEF_TODAY"] = os.environ.get("RELIEF_TODAY", "2026-11-23")
    return env


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``main(argv)``'s exit code and everything it printed (argparse exits by SystemExit)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ------------------------------------------------------------------ commands that work as printed
def test_printed_command_is_the_venv_script_from_the_repository_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After the README's two commands `relief-gateway` is not on PATH: print the path."""
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(ROOT)
    assert invocation() == ".venv/bin/relief-gateway"
    monkeypatch.chdir(tmp_path)  # elsewhere: the absolute path
    assert invocation() == str(SCRIPT)


def test_printed_command_is_the_name_when_it_is_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "demo"])
    monkeypatch.setenv("PATH", f"{SCRIPT.parent}:/usr/bin:/bin")
    assert invocation() == "relief-gateway"


def test_readme_prints_commands_that_work_after_its_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    demo_part = text.split("## What the demo shows", 1)[1].split("\n## ", 1)[0]
    bare = re.findall(r"(?<![/\w])relief-gateway (?:ingest|warn|token|serve|seed)", demo_part)
    assert not bare, f"README's demo part names commands not on PATH: {bare}"
    assert ".venv/bin/relief-gateway" in demo_part


# ------------------------------------------------------------------ the demo's port
def test_demo_on_a_busy_port_fails_in_chinese_before_printing_or_creating(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(SCRIPT), "demo", "--persons", "20", "--port", str(port)],
            env=_env(data_dir),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # no token, no link for a server that cannot start
    assert f"端口 {port} 已被占用" in result.stderr
    assert not ENGLISH.search(result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()


# ------------------------------------------------------------------ arguments before side effects
@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_serve_refuses_a_port_outside_1_to_65535(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, port: str
) -> None:
    code, output = _main(capsys, "serve", "--data-dir", str(tmp_path / "d"), "--port", port)
    assert code == 2
    assert "端口应为 1 到 65535 之间的整数" in output
    assert not ENGLISH.search(output), output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("persons", ["-5", "0", "many"])
def test_demo_refuses_bad_persons_before_creating_the_data_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, persons: str
) -> None:
    data_dir = tmp_path / "fresh"
    code, output = _main(capsys, "demo", "--data-dir", str(data_dir), "--persons", persons)
    assert code == 2
    assert "应为正整数" in output
    assert not ENGLISH.search(output), output
    assert not data_dir.exists()


def test_seed_refuses_bad_persons_before_migrating(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, output = _main(capsys, "seed", "--data-dir", str(tmp_path / "d"), "--persons", "-5")
    assert code == 2
    assert "应为正整数" in output
    assert not (tmp_path / "d").exists()


# ------------------------------------------------------------------ region codes that exist
@pytest.mark.parametrize(
    "argv",
    [
        ["token", "--dept", "civil_affairs", "--level", "county", "--region", "999999"],
        ["token", "--dept", "civil_affairs", "--level", "city", "--region", "3799"],
        ["token", "--dept", "civil_affairs", "--level", "province", "--region", "99"],
        ["ingest", "--source", "civil_affairs", "--feed", "identities", "--region", "999999", "x"],
    ],
    ids=["token-county", "token-city", "token-province", "ingest"],
)
def test_region_codes_outside_the_region_table_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    code, output = _main(capsys, *argv[:1], "--data-dir", str(tmp_path / "d"), *argv[1:])
    assert code == 2
    assert "不存在" in output
    assert "--region" in output
    assert not ENGLISH.search(output), output
    assert not (tmp_path / "d").exists()  # refused before a key was created


def test_a_region_of_the_table_is_accepted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, output = _main(
        capsys,
        "token",
        "--data-dir",
        str(tmp_path / "d"),
        "--dept",
        "civil_affairs",
        "--level",
        "county",
        "--region",
        "370124",
    )
    assert code == 0, output
    assert output.count(".") == 2  # a JWT


# ------------------------------------------------------------------ argparse in Chinese
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["token", "--level", "county", "--region", "370124"], "缺少必需的参数: --dept"),
        (["token", "--dept", "x", "--level", "town", "--region", "37"], "无效的取值 'town'"),
        (["migrate", "--bogus"], "无法识别的参数: --bogus"),
        (["nonsense"], "无效的取值 'nonsense'"),
        (["serve", "--workers"], "需要一个取值"),
        (["warn", "run", "--month"], "需要一个取值"),
        (["token", "--ttl", "two"], "'two' 不是有效的整数"),
        (["serve", "--workers", "two"], "应为正整数, 收到 'two'"),
    ],
    ids=[
        "required",
        "choice",
        "unrecognized",
        "command",
        "expected-one",
        "nested",
        "type",
        "shared-type",
    ],
)
def test_argparse_errors_are_chinese(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    code, output = _main(capsys, *argv)
    assert code == 2
    assert expected in output, output
    assert "用法: relief-gateway" in output
    assert "错误: " in output
    assert not ENGLISH.search(output), output


@pytest.mark.parametrize(
    "argv", [[], ["demo"], ["serve"], ["token"], ["ingest"], ["warn"], ["warn", "run"]]
)
def test_help_is_chinese(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, output = _main(capsys, *argv, "--help")
    assert code == 0
    assert output.startswith("用法: relief-gateway")
    assert "选项:" in output
    assert "显示本帮助并退出" in output
    assert not ENGLISH.search(output), output
    assert CHINESE.search(output)
