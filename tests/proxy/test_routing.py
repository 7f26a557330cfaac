"""split_target: the service from the first segment, the rest normalised once or refused;
its fast route for plain targets agrees with the full one on random targets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.plane.ssrf import UnsafePath
from meshkit.proxy import BadRoute, parse_listen, split_target
from meshkit.proxy.routing import _PLAIN_TARGET, full_split_target


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


TARGET_ALPHABET = "abz09-/.%2eEfF;@?#\\~_=&: \x00\n\uff0fA"


def route_outcome(split: object, raw: str) -> tuple[str, object]:
    assert callable(split)
    try:
        return "routed", split(raw)
    except (BadRoute, UnsafePath) as exc:
        return type(exc).__name__, str(exc)


@settings(derandomize=True, max_examples=600, deadline=None)
@given(
    raw=st.one_of(
        st.text(alphabet=TARGET_ALPHABET, max_size=24).map(lambda s: "/" + s),
        st.text(max_size=16),
        st.from_regex(r"/[a-z0-9-]{1,66}(/[a-z.;=]{0,5}){0,3}(\?[a-z=&/.]{0,6})?", fullmatch=True),
    )
)
def test_fast_and_full_routes_agree(raw: str) -> None:
    assert route_outcome(split_target, raw) == route_outcome(full_split_target, raw)


def test_plain_targets_take_the_fast_route() -> None:
    for raw in ("/catalog", "/catalog/", "/catalog?x=1", "/a-1/b.c/d?e=/f", "/" + "a" * 64 + "/x"):
        assert _PLAIN_TARGET.fullmatch(raw) is not None
        assert split_target(raw) == full_split_target(raw)
    for raw in ("/catalog\n", "/cat.alog/x", "/" + "a" * 65, "/svc/.hidden", "/svc/%7e"):
        assert _PLAIN_TARGET.fullmatch(raw) is None
