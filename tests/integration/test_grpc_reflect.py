"""gRPC server reflection (grpc.reflection.v1 and v1alpha) against the real
snowflaked: grpcio speaking the protocol with message classes from the
checked-in reflection.proto, and grpcurl (Go, from the module proxy: `make
test-conformance` installs it, its directory in SF_GO_TOOLS) listing,
describing and calling with no .proto at hand.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, go_tool

grpc = pytest.importorskip("grpc", reason="python3-grpcio not installed")
pytest.importorskip("google.protobuf", reason="python3-protobuf not installed")
from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: E402
from google.protobuf import message_factory  # noqa: E402

SERVICES = ["snowflake.v1.Snowflake", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"]


GRPCURL = go_tool("grpcurl")
needs_grpcurl = pytest.mark.skipif(
    GRPCURL is None, reason="grpcurl not installed (make test-conformance "
    "installs it; needs Go and its module proxy)")


@pytest.fixture(scope="module")
def refl(tmp_path_factory):
    if not shutil.which("protoc-c"):
        pytest.skip("protoc-c not installed (protobuf-c-compiler)")
    out = str(tmp_path_factory.mktemp("proto") / "r.desc")
    subprocess.run(["protoc-c", "--descriptor_set_out=" + out, "-I",
                    os.path.join(ROOT, "proto"),
                    "grpc/reflection/v1/reflection.proto"], check=True)
    fds = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    f = message_factory.MessageFactory(pool)
    get = lambda n: f.GetPrototype(pool.FindMessageTypeByName(  # noqa: E731
        "grpc.reflection.v1." + n))
    return get("ServerReflectionRequest"), get("ServerReflectionResponse")


def reflect(port, refl, requests, version="v1"):
    """One ServerReflectionInfo stream: the responses to requests, in
    order, and the seconds the first took."""
    Req, Rep = refl
    ch = grpc.insecure_channel("127.0.0.1:%d" % port)
    call = ch.stream_stream(
        "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version,
        request_serializer=Req.SerializeToString,
        response_deserializer=Rep.FromString)
    t0 = time.monotonic()
    out, first = [], None
    for r in call(iter([Req(**kw) for kw in requests]), timeout=10):
        first = first or time.monotonic() - t0
        out.append(r)
    ch.close()
    return out, first


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_with_grpcio(snowflaked, refl, version):
    n = snowflaked()
    got, first = reflect(n.port, refl, [
        {"list_services": ""},
        {"file_containing_symbol": "snowflake.v1.Snowflake"},
        {"file_containing_symbol": "snowflake.v1.NextReply"},
        {"file_by_filename": "grpc/health/v1/health.proto"},
        {"file_containing_symbol": "nope.v1.Nope"},
        {"all_extension_numbers_of_type": "snowflake.v1.NextRequest"},
    ], version)
    print("first reflection answer after %.1f ms" % (first * 1000))
    assert len(got) == 6
    assert [s.name for s in got[0].list_services_response.service] == SERVICES
    for i in (1, 2):
        fd = descriptor_pb2.FileDescriptorProto.FromString(
            got[i].file_descriptor_response.file_descriptor_proto[0])
        assert fd.name == "snowflake/v1/snowflake.proto"
        assert [m.name for m in fd.service[0].method] == ["Next", "Decode"]
    fd = descriptor_pb2.FileDescriptorProto.FromString(
        got[3].file_descriptor_response.file_descriptor_proto[0])
    assert [m.name for m in fd.service[0].method] == ["Check", "Watch"]
    assert got[4].error_response.error_code == 5  # NOT_FOUND, stream goes on
    assert "nope.v1.Nope" in got[4].error_response.error_message
    assert got[4].original_request.file_containing_symbol == "nope.v1.Nope"
    assert got[5].all_extension_numbers_response.base_type_name == \
        "snowflake.v1.NextRequest"


def grpcurl(node, *args, data=None):
    p = subprocess.run([GRPCURL, "-plaintext", *(["-d", data] if data else []),
                        "127.0.0.1:%d" % node.port, *args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@needs_grpcurl
def test_grpcurl_with_no_proto(snowflaked, refl):
    """What a new user types first: list, describe, a call, all from
    reflection; `list` used to hang about 90 s."""
    n = snowflaked(MACHINE_ID="6")
    t0 = time.monotonic()
    assert grpcurl(n, "list").split() == sorted(SERVICES)
    print("grpcurl list: %.0f ms, process start included"
          % ((time.monotonic() - t0) * 1000))
    assert grpcurl(n, "list", "snowflake.v1.Snowflake").split() == [
        "snowflake.v1.Snowflake.Decode", "snowflake.v1.Snowflake.Next"]
    out = grpcurl(n, "describe", "snowflake.v1.Snowflake")
    assert "rpc Next ( .snowflake.v1.NextRequest )" in out
    assert "Next issues count increasing IDs" in out  # comments kept
    assert "uint32 machine_id = 2;" in grpcurl(n, "describe",
                                               "snowflake.v1.NextReply")
    got = json.loads(grpcurl(n, "snowflake.v1.Snowflake/Next",
                             data='{"count": 3}'))
    ids = [int(i) for i in got["ids"]]
    assert len(ids) == 3 and ids == sorted(ids) and got["machineId"] == 6
    dec = json.loads(grpcurl(n, "snowflake.v1.Snowflake/Decode",
                             data='{"id": "%d"}' % ids[0]))
    assert dec["machineId"] == 6
    assert json.loads(grpcurl(n, "grpc.health.v1.Health/Check")) == {
        "status": "SERVING"}
