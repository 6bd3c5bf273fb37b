"""The platform's protocol as one object: every runner of a submission asks it for the request.

The story: a profile is read once; evaluate, the build's self-check and the bundle's ingestion
(which has only protocol.json and a copy of protocol.py) all hand the harness the same request,
with every default resolved; a protocol.json of an older format is refused, not half-read.
"""

import json

import pytest

from leafsub.profiles import builtin_names, load_profile
from leafsub.protocol import PROTOCOL_VERSION, Protocol, request_from_json


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_profile_gives_one_request_locally_and_from_its_json(name):
    proto = Protocol.from_profile(load_profile(name))
    local = proto.child_request(folder="/x")
    # The bundle writes to_json() as protocol.json; its ingestion builds the request from it.
    bundled = request_from_json(json.loads(json.dumps(proto.to_json())), folder="/x")
    assert local == bundled
    assert set(local) == {"module", "class_name", "constructor", "method", "container", "dtype",
                          "batch_size", "kind", "shape", "range", "channel_order", "layout",
                          "framework", "args", "batched", "output_kind", "folder"}
    assert local["args"][0] == "X" and local["batched"] in (True, False)
    assert None not in (local["framework"], local["layout"], local["batch_size"])
    if proto.input.is_image:
        assert local["channel_order"] in ("RGB", "BGR") and len(local["range"]) == 2
    else:
        assert local["channel_order"] is None


def test_defaults_are_resolved_once_and_the_input_describes_itself():
    prof = load_profile("torch-generic")
    proto = Protocol.from_profile(prof)
    assert proto.framework == "torch" and proto.framework_version == "2.13.0"
    assert proto.input.describe(proto.framework) == \
        "torch.Tensor float32 0-255 RGB, [batch, 3, 96, 96]"
    assert proto.interface.call_text() == "Model()"
    series = Protocol.from_profile(load_profile("an2dl-2022-ts"))
    assert series.framework == "tensorflow" and series.input.unit == "samples"
    assert series.input.range is None and series.input.layout == "NHWC"


def test_a_protocol_json_of_another_version_is_refused():
    data = Protocol.from_profile(load_profile("an2dl-2022")).to_json()
    assert data["leafsub_protocol"] == PROTOCOL_VERSION
    old = dict(data, leafsub_protocol=1)
    del old["framework"]
    with pytest.raises(ValueError, match="protocol version 1, expected %d" % PROTOCOL_VERSION):
        request_from_json(old)
