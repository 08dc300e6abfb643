"""make install: the header, both libraries, snowflake.pc for the PREFIX given
and the binaries land under DESTDIR, and a program built with pkg-config
against the installed copy issues IDs, linked shared and static."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROGRAM = r"""
#include <snowflake.h>
#include <stdio.h>
int main(void) {
  sf_config c;
  sf_config_init(&c);
  c.machine_id = 5;
  sf_gen *g;
  if (sf_gen_new(&c, &g) != SF_OK)
    return 1;
  uint64_t a, b;
  if (sf_gen_next(g, &a, NULL) != SF_OK || sf_gen_next(g, &b, NULL) != SF_OK)
    return 1;
  sf_parts p;
  sf_decode(sf_gen_layout(g), b, &p);
  printf("%llu %llu %llu\n", (unsigned long long)a, (unsigned long long)b,
         (unsigned long long)p.machine_id);
  sf_gen_free(g);
  return 0;
}
"""


def build_dir():
    sf = os.environ.get("SNOWFLAKED")
    if not sf:
        pytest.skip("SNOWFLAKED is not set: run through make test")
    return os.path.dirname(sf)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def test_install_and_link(tmp_path):
    dest = tmp_path / "root"
    run(["make", "-s", "BUILD=" + build_dir(), "install", "PREFIX=/opt/sf",
         "DESTDIR=" + str(dest)], cwd=ROOT)
    pre = dest / "opt" / "sf"
    for f in ["include/snowflake.h", "lib/libsnowflake.a", "lib/libsnowflake.so",
              "lib/pkgconfig/snowflake.pc", "bin/snowflake", "bin/snowflaked",
              "share/snowflake/proto/snowflake/v1/snowflake.proto"]:
        assert (pre / f).exists(), f
    # The shipped .proto is one a client's code generator takes as it is.
    gen = tmp_path / "gen"
    gen.mkdir()
    run(["protoc-c", "--c_out=" + str(gen), "-I", str(pre / "share/snowflake/proto"),
         "snowflake/v1/snowflake.proto"])
    assert (gen / "snowflake/v1/snowflake.pb-c.h").exists()
    pc = (pre / "lib/pkgconfig/snowflake.pc").read_text()
    assert "prefix=/opt/sf" in pc and "libdir=/opt/sf/lib" in pc

    src = tmp_path / "t.c"
    src.write_text(PROGRAM)
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=str(dest),
               PKG_CONFIG_PATH=str(pre / "lib/pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs", "snowflake"], env=env).stdout.split()
    # A sanitizer build's libraries need the program linked the same way.
    san = os.environ.get("SF_SAN_FLAGS", "").split()
    exe = tmp_path / "t"
    run(["cc", "-std=c11"] + san + [str(src), "-o", str(exe)] + flags)
    out = run([str(exe)], env=dict(os.environ, LD_LIBRARY_PATH=str(pre / "lib"))).stdout.split()
    a, b, machine = (int(x) for x in out)
    assert b > a > 0 and machine == 5

    if san:
        return  # the sanitizer runtimes cannot be linked statically
    exe_static = tmp_path / "ts"
    run(["cc", "-std=c11", "-static", str(src), "-I" + str(pre / "include"),
         str(pre / "lib/libsnowflake.a"), "-lpthread", "-o", str(exe_static)])
    a, b, machine = (int(x) for x in run([str(exe_static)]).stdout.split())
    assert b > a > 0 and machine == 5
