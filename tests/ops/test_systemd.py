"""deploy/systemd: the unit as `make install` writes it passes `systemd-analyze
verify` (with its Documentation= man page found), rates an exposure level of
2.5 or lower by `systemd-analyze security --offline=true`, and the example
environment file names every setting and only real ones."""
import os
import re

import pytest

from opslib import DEPLOY, SNOWFLAKED, help_settings, run, tool

THRESHOLD = 2.5  # issue 14: exposure level 2.5 or lower
UNIT = os.path.join(DEPLOY, "systemd", "snowflaked.service")
ENV = os.path.join(DEPLOY, "systemd", "snowflaked.env")


def unit_path(prefix):
    return os.path.join(prefix, "lib", "systemd", "system", "snowflaked.service")


def exposure(analyze, unit):
    """(exit status, overall exposure level) of `security --offline=true`."""
    p = run([analyze, "security", "--offline=true",
             "--threshold=%d" % round(THRESHOLD * 10), unit], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    return p.returncode, float(m.group(1))


def test_install_writes_unit_man_pages_and_env_example(installed):
    unit = open(unit_path(installed)).read()
    assert re.search(r"^ExecStart=%s/bin/snowflaked$" % re.escape(installed), unit, re.M)
    for f in ["share/man/man1/snowflake.1", "share/man/man8/snowflaked.8",
              "share/doc/snowflake-id/snowflaked.env.example", "bin/snowflaked"]:
        assert os.path.isfile(os.path.join(installed, f)), f


def test_systemd_analyze_verify(installed):
    analyze = tool("systemd-analyze", "systemd")
    tool("man", "man-db")
    env = dict(os.environ, MANPATH=os.path.join(installed, "share", "man"))
    p = run([analyze, "verify", "--man=yes", unit_path(installed)], env=env, check=False)
    assert p.returncode == 0 and p.stderr.strip() == "" and p.stdout.strip() == "", \
        (p.returncode, p.stdout, p.stderr)


def test_systemd_analyze_verify_fails_on_a_broken_unit(installed, tmp_path):
    """The check above can fail: a unit whose ExecStart= does not exist."""
    analyze = tool("systemd-analyze", "systemd")
    bad = tmp_path / "snowflaked.service"
    bad.write_text(open(unit_path(installed)).read().replace(
        "ExecStart=" + installed, "ExecStart=/nonexistent"))
    p = run([analyze, "verify", "--man=no", str(bad)], check=False)
    assert p.returncode != 0 and "/nonexistent/bin/snowflaked" in p.stderr, p.stderr


def test_security_exposure_at_most_threshold(installed):
    analyze = tool("systemd-analyze", "systemd")
    rc, level = exposure(analyze, unit_path(installed))
    assert level <= THRESHOLD and rc == 0, (level, rc)


def test_security_threshold_rejects_an_unhardened_unit(tmp_path):
    """The same check on the unit without its hardening lines fails, so the
    threshold is really enforced."""
    analyze = tool("systemd-analyze", "systemd")
    keep = ("[", "#", "Description", "Documentation", "Wants", "After", "Type",
            "EnvironmentFile", "Environment=", "ExecStart", "Restart",
            "KillSignal", "TimeoutStopSec", "WantedBy")
    lines = [ln for ln in open(UNIT).read().splitlines()
             if not ln or ln.startswith(keep)]
    bare = tmp_path / "snowflaked.service"
    bare.write_text("\n".join(lines) + "\n")
    rc, level = exposure(analyze, str(bare))
    assert level > THRESHOLD and rc != 0, (level, rc)


def env_names():
    return re.findall(r"^#?([A-Z][A-Z0-9_]*)=", open(ENV).read(), re.M)


def test_env_example_names_every_setting_once():
    help_text = run([SNOWFLAKED, "--help"]).stdout
    settings = {env for env, _ in help_settings(help_text)}
    names = env_names()
    assert len(names) == len(set(names)), names
    # STATE_FILE is the unit's own (Environment=, under StateDirectory=).
    assert set(names) | {"STATE_FILE"} == settings
    assert re.search(r"^Environment=STATE_FILE=%S/snowflaked/state$",
                     open(UNIT).read(), re.M)


def test_env_example_starts_a_node(snowflaked, tmp_path):
    """The example's active lines are settings snowflaked accepts."""
    env = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", open(ENV).read(), re.M))
    assert "MACHINE_ID" in env
    env.update(PORT="0", BIND="127.0.0.1", STATE_FILE=str(tmp_path / "state"))
    node = snowflaked(**env)
    assert node.get("/health")[0] == 200
