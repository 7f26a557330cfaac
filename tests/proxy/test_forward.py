"""The mapping both sidecar engines share: header rules and the JSON errors."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from meshkit.plane.headers import strip_hop_by_hop
from meshkit.proxy.forward import error_reply, outgoing_headers, without_hop_by_hop
from meshkit.proxy.h1server import answer_fields


@pytest.fixture(autouse=True)
def engine() -> str:
    return "none"  # no server here: overrides the conftest's both-engines parametrisation


NAMES = st.sampled_from(["Connection", "connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding",
                         "Upgrade", "Host", "Content-Length", "Proxy-Authorization", "X-A", "x-b", "X-Drop",
                         "Accept", "X-Meshkit-Deadline-Ms", "x-meshkit-other"])  # fmt: skip
VALUES = st.sampled_from(["1", "close", "keep-alive, X-Drop", "x-b", " X-A , te", "", ","])


@given(st.lists(st.tuples(NAMES, VALUES), max_size=12))
def test_without_hop_by_hop_matches_strip_hop_by_hop(pairs: list[tuple[str, str]]) -> None:
    headers = CIMultiDict(pairs)
    assert list(without_hop_by_hop(headers).items()) == list(strip_hop_by_hop(headers).items())


@given(st.lists(st.tuples(NAMES, VALUES), max_size=12))
def test_the_h1_engine_drops_from_an_answer_what_without_hop_by_hop_drops(
    pairs: list[tuple[str, str]],
) -> None:
    headers = CIMultiDict(pairs)
    assert list(answer_fields(headers)) == list(without_hop_by_hop(headers).items())


def test_outgoing_headers_drop_the_mesh_own_and_hop_by_hop() -> None:
    headers = CIMultiDict(
        [("X-Meshkit-Deadline-Ms", "5"), ("Connection", "X-Private"), ("X-Private", "1"), ("X-Keep", "2")]
    )
    assert list(outgoing_headers(headers).items()) == [("X-Keep", "2")]


def test_error_reply_is_json_named_in_a_header() -> None:
    reply = error_reply(503, "NoHealthyInstances", "no healthy instance")
    assert reply.status == 503
    assert reply.headers["X-Meshkit-Error"] == "NoHealthyInstances"
    assert reply.headers["Content-Type"].startswith("application/json")
    assert orjson.loads(reply.body) == {"detail": "no healthy instance", "error": "NoHealthyInstances"}


INTERNAL_NAMES = st.sampled_from(["X-Meshkit-Deadline-Ms", "x-MESHKIT-other", "a-x-meshkit-b", "X-Meshkit",
                                  "X-Meshki", "X-Meshkit-", "\u0130x-meshkit-", "X-Mesh\u212ait-k", "X-A"])  # fmt: skip


@given(st.lists(st.tuples(st.one_of(NAMES, INTERNAL_NAMES), VALUES), max_size=12))
def test_outgoing_headers_keep_exactly_what_is_neither_hop_by_hop_nor_internal(
    pairs: list[tuple[str, str]],
) -> None:
    expected = strip_hop_by_hop(CIMultiDict(pairs))
    for name in [n for n in expected if n[:10].lower() == "x-meshkit-"]:
        expected.popall(name, None)
    assert list(outgoing_headers(CIMultiDict(pairs)).items()) == list(expected.items())
