"""split_target: the service from the first segment, the rest normalised once or refused."""

from __future__ import annotations

import pytest

from meshkit.plane.ssrf import UnsafePath
from meshkit.proxy import BadRoute, parse_listen, split_target


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/catalog", ("catalog", "/")),
        ("/catalog/", ("catalog", "/")),
        ("/catalog?x=1", ("catalog", "/?x=1")),
        ("/catalog/items/3?q=a", ("catalog", "/items/3?q=a")),
        ("/a-1/%7Euser", ("a-1", "/~user")),
    ],
)
def test_splits_and_normalises(raw: str, expected: tuple[str, str]) -> None:
    assert split_target(raw) == expected


@pytest.mark.parametrize(
    "raw", ["/Catalog/x", "//x", "/cat%61log/x", "/cat.alog/x", "*", "http://evil/x", "/" + "a" * 65]
)
def test_bad_service_names_are_refused(raw: str) -> None:
    with pytest.raises(BadRoute):
        split_target(raw)


@pytest.mark.parametrize(
    "raw", ["/svc/../admin", "/svc/%2e%2e/x", "/svc/a%2fb", "/svc//x", "/svc/a%00b", "/svc/a%0d%0ab"]
)
def test_unsafe_paths_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePath):
        split_target(raw)


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:15001") == ("127.0.0.1", 15001)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("15001", "host:", "host:99999", ":80"):
        with pytest.raises(ValueError, match=r"^listen"):
            parse_listen(bad)
