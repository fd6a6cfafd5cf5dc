"""README's configuration tables list every setting: each field of the settings model and
each ``SEATLEDGER_*`` variable a script, the code or the tests read from the environment."""

from __future__ import annotations

import re
from pathlib import Path

from seatledger.config import Settings

ROOT = Path(__file__).resolve().parents[3]
NAME = re.compile(r"SEATLEDGER_[A-Z0-9_]+")
#: A shell script reading a variable with a default: ${SEATLEDGER_X:-...} or ${SEATLEDGER_X-...}
SHELL_READ = re.compile(r"\$\{(SEATLEDGER_[A-Z0-9_]+):?-")
#: Python reading a variable by its literal name: os.environ.get(...), os.environ[...], getenv
PYTHON_READ = re.compile(
    r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](SEATLEDGER_[A-Z0-9_]+)["']"""
)


def documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table_rows = [line for line in section.splitlines() if line.startswith("| `SEATLEDGER_")]
    return {name for row in table_rows for name in NAME.findall(row.split(" | ")[0])}


def read_by_scripts() -> set[str]:
    names: set[str] = set()
    scripts = [*(ROOT / "deploy").rglob("*.sh"), ROOT / "Makefile"]
    for script in scripts:
        names.update(SHELL_READ.findall(script.read_text()))
    return names


def read_by_code() -> set[str]:
    names: set[str] = set()
    for folder in ("seatledger", "services", "schemas", "benchmarks", "tests", "deploy"):
        for source in (ROOT / folder).rglob("*.py"):
            names.update(PYTHON_READ.findall(source.read_text()))
    return names


def settings_fields() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def test_every_field_of_the_settings_model_is_documented():
    assert settings_fields() - documented() == set()


def test_every_variable_the_scripts_read_is_documented():
    scripts = read_by_scripts()
    assert "SEATLEDGER_SMTP_SINK_PORT" in scripts  # the reading is recognised at all
    assert scripts - documented() == set()


def test_every_variable_the_code_reads_is_documented():
    code = read_by_code()
    assert "SEATLEDGER_TEST_DATABASE_URL" in code
    assert code - documented() == set()


def test_nothing_documented_is_read_by_nobody():
    read = settings_fields() | read_by_scripts() | read_by_code()
    assert documented() - read == set()
