"""encode_request and field_lines: the request head the h1 transport writes, byte for byte."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from meshkit.transport.h1.head import UnsafeRequest, body_after_head, encode_request, field_lines


def test_field_lines() -> None:
    assert field_lines([]) == ""
    assert field_lines([("A", "1"), ("B", "x: y")]) == "A: 1\r\nB: x: y\r\n"
    assert field_lines([("A", "1"), ("N", 7)]) == "A: 1\r\nN: 7\r\n"  # not a string: str() of it


def test_plain_request() -> None:
    headers = CIMultiDict([("User-Agent", "t"), ("Accept", "*/*"), ("Accept", "text/plain")])
    assert encode_request("GET", "/a?b=1", "10.0.0.1:80", headers, None) == (
        b"GET /a?b=1 HTTP/1.1\r\nHost: 10.0.0.1:80\r\nUser-Agent: t\r\nAccept: */*\r\n"
        b"Accept: text/plain\r\n\r\n"
    )


def test_the_callers_host_is_kept_and_its_framing_dropped() -> None:
    headers = CIMultiDict(
        [("host", "virtual.example"), ("X-A", "1"), ("content-length", "99"), ("Transfer-Encoding", "chunked"),
         ("HOST", "second.example")]
    )  # fmt: skip
    assert encode_request("POST", "/", "10.0.0.1:80", headers, b"four") == (
        b"POST / HTTP/1.1\r\nHost: virtual.example\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nfour"
    )
    assert encode_request("PUT", "/", "h", CIMultiDict(), None).endswith(b"Content-Length: 0\r\n\r\n")


def test_the_attempts_deadline_replaces_the_callers_and_leaves_their_headers_alone() -> None:
    headers = CIMultiDict([("X-Meshkit-Deadline-Ms", "99999"), ("X-A", "1")])
    assert encode_request("GET", "/", "h", headers, None, 1500) == (
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-Meshkit-Deadline-Ms: 1500\r\n\r\n"
    )
    assert list(headers.items()) == [("X-Meshkit-Deadline-Ms", "99999"), ("X-A", "1")]
    assert encode_request("GET", "/", "h", CIMultiDict(), None, 0).endswith(
        b"X-Meshkit-Deadline-Ms: 0\r\n\r\n"
    )
    # without a deadline of its own the transport forwards what it was given
    assert b"X-Meshkit-Deadline-Ms: 99999\r\n" in encode_request("GET", "/", "h", headers, None)


def test_non_utf8_text_goes_out_as_the_bytes_it_came_from() -> None:
    data = encode_request("GET", "/", "h", CIMultiDict({"X-Raw": "caf\udce9"}), None)
    assert b"X-Raw: caf\xe9\r\n" in data


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/", {"X-A": "a\r\nX-Injected: 1"}), ("/", {"X-A": "a\rb"}), ("/", {"X\nB": "a"}),
     ("/", {"X-A": "a\x00"}), ("/a b", {}), ("/a\r\n", {}), ("/", {"Host": "h\r\nX: 1"})],
)  # fmt: skip
def test_line_breaks_nul_and_spaces_are_refused(path: str, headers: dict[str, str]) -> None:
    with pytest.raises(UnsafeRequest):
        encode_request("GET", path, "h", CIMultiDict(headers), None)


def test_large_bodies_go_in_a_second_write() -> None:
    big = b"z" * 20000
    assert encode_request("POST", "/", "h", CIMultiDict(), big).endswith(b"Content-Length: 20000\r\n\r\n")
    assert body_after_head(big) is big
    assert body_after_head(b"small") is None
    assert body_after_head(None) is None
