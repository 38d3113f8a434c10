"""The fp8lab command line: --help, version, formats, and exit code 2 on usage errors."""
import os
import subprocess
import sys

import fp8lab
from fp8lab.cli import main


def run_cli(*args):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "fp8lab", *args], capture_output=True, text=True, env=env, timeout=120)


def test_help_lists_the_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "version" in r.stdout and "formats" in r.stdout


def test_version_matches_the_package():
    r = run_cli("version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"fp8lab {fp8lab.__version__}"


def test_formats_table_has_every_format_with_its_max(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == set(fp8lab.formats())
    assert rows["e4m3"][5] == "448.0" and rows["e5m2"][5] == "57344.0"


def test_unknown_command_is_a_usage_error():
    r = run_cli("no-such-command")
    assert r.returncode == 2
    assert "invalid choice" in r.stderr


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: fp8lab" in capsys.readouterr().out
