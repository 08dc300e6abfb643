"""man/: both pages are `mandoc -T lint` clean, and say exactly what
`snowflaked --help` and `snowflake --help` say: the same settings (each
environment variable with its flag), the same flags, the same commands."""
import os
import re

from opslib import MAN, SNOWFLAKE, SNOWFLAKED, help_settings, integration, run, tool

PAGES = [os.path.join(MAN, "snowflaked.8"), os.path.join(MAN, "snowflake.1")]
FLAG = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")


def render(page):
    """The page as plain text (overstrike bold and underline removed),
    without its EXAMPLES (they run other commands too, such as curl)."""
    out = run([tool("mandoc", "mandoc"), "-T", "ascii", page]).stdout
    out = re.sub(r".\x08", "", out)
    return re.sub(r"\nEXAMPLES\n.*?\n(?=[A-Z])", "\n", out, flags=re.S)


def flags(text):
    return set(FLAG.findall(text))


def test_mandoc_lint_clean():
    """Both pages at once, from man/, so each one's Xr to the other is
    found (mandoc looks for it in the current directory)."""
    p = run([tool("mandoc", "mandoc"), "-T", "lint", "snowflaked.8", "snowflake.1"],
            cwd=MAN, check=False)
    ours = [ln for ln in (p.stdout + p.stderr).splitlines() if "snowflake" in ln.split(":")[1]]
    assert p.returncode == 0 and not ours, p.stdout + p.stderr


def test_mandoc_lint_catches_a_bad_page(tmp_path):
    """The check above can fail: a page with a macro mandoc does not know."""
    bad = tmp_path / "snowflaked.8"
    bad.write_text(open(PAGES[0]).read().replace(".Sh SIGNALS", ".Shh SIGNALS"))
    p = run([tool("mandoc", "mandoc"), "-T", "lint", str(bad), PAGES[1]], check=False)
    assert p.returncode != 0 and "Shh" in p.stdout + p.stderr


def test_snowflaked_settings_match_help():
    help_text = run([SNOWFLAKED, "--help"]).stdout
    in_help = help_settings(help_text)
    src = open(PAGES[0]).read()
    in_man = re.findall(r"^\.It Ev ([A-Z][A-Z0-9_]*) , Fl \\-([a-z][a-z0-9-]*)$", src, re.M)
    in_man = [(env, "--" + f) for env, f in in_man]
    assert len(in_help) >= 15 and in_man == in_help, (in_man, in_help)


def test_snowflaked_flags_match_help():
    help_text = run([SNOWFLAKED, "--help"]).stdout
    text = render(PAGES[0])
    assert {"--healthcheck", "--help", "--version"} <= flags(help_text)
    assert flags(text) == flags(help_text), (flags(text) ^ flags(help_text))


def test_snowflake_commands_and_flags_match_help():
    help_text = run([SNOWFLAKE, "--help"]).stdout
    text = render(PAGES[1])
    cmds_help = set(re.findall(r"^       snowflake ([a-z]+) ", help_text, re.M)) | \
        set(re.findall(r"^usage: snowflake ([a-z]+) ", help_text, re.M))
    cmds_man = set(re.findall(r"^\.Cm ([a-z]+)$", open(PAGES[1]).read().split(".Sh DESCRIPTION")[0], re.M))
    assert cmds_help == {"gen", "decode", "bounds", "bench"} and cmds_man == cmds_help, (cmds_man, cmds_help)
    assert "-n" in flags(help_text) and "--count" in flags(help_text)
    assert flags(text) == flags(help_text), (flags(text) ^ flags(help_text))
    # The environment the CLI reads.
    assert "MACHINE_ID" in help_text and "MACHINE_ID" in text


def test_snowflaked_exit_statuses_documented():
    """EXIT STATUS lists 0, 1 and 2, and the real binary exits with them
    where the page says: --version 0, --healthcheck with nothing listening
    1, a bad setting 2."""
    text = render(PAGES[0])
    section = text.split("\nEXIT STATUS\n")[1].split("\nSEE ALSO\n")[0]
    documented = set(re.findall(r"^     (\d)\s", section, re.M))
    assert documented == {"0", "1", "2"}, section
    assert "--version" in section and "--healthcheck" in section and "setting" in section
    env = {k: v for k, v in os.environ.items() if k not in ("MACHINE_ID", "PORT")}
    port = str(integration.free_port())
    assert run([SNOWFLAKED, "--version"], check=False).returncode == 0
    assert run([SNOWFLAKED, "--healthcheck", "--port", port], check=False,
               env=env).returncode == 1
    assert run([SNOWFLAKED, "--machine-id", "1024"], check=False, env=env).returncode == 2
