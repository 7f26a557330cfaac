"""normalize_path's fast path: it returns a path unchanged only where the full check would.

Random paths, drawn from an alphabet weighted towards what the full check reacts to
(`/`, `.`, `%`, hex digits, `;`, `@`, `?`, `#`, backslashes, controls, non-ASCII and
characters that fold to `/` or `.`), must get the same answer from `normalize_path` and
from `full_normalize_path` (the check without the fast path): the same string, or the
same refusal with the same message.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.plane.ssrf import MAX_PATH_LENGTH, UnsafePath, normalize_path
from meshkit.plane.ssrf.path import _PLAIN, full_normalize_path

PCHARS = "abcXYZ019-._~!$&'()*+,;=:"
TRICKY = "/.%2eEfFaA0c;@?#\\~-_=&+:!$'()*, \x00\r\n\t\x7f\"<>[]{}|^`é\uff0f\uff0e\u2024\u2215"

tricky_paths = st.text(alphabet=TRICKY, max_size=24).map(lambda s: "/" + s)
tricky_queries = st.tuples(
    st.text(alphabet=PCHARS + "/%", max_size=8), st.text(alphabet="%2eEfF0ac=&/.?#;@\\ \x00\né", max_size=12)
)
any_text = st.text(max_size=24)
segment = st.text(alphabet=PCHARS, max_size=8).filter(lambda s: not s.startswith("."))
plain_paths = st.builds(
    lambda segments, query: "/" + "/".join(segments) + query,
    st.lists(segment, min_size=1, max_size=5),
    st.one_of(st.just(""), st.text(alphabet="abc=&?/.!;:+~-_", max_size=10).map(lambda q: "?" + q)),
)


def outcome(normalize: object, raw: str) -> tuple[str, str]:
    assert callable(normalize)
    try:
        return "kept", normalize(raw)
    except UnsafePath as exc:
        return "refused", str(exc)


@settings(derandomize=True, max_examples=600, deadline=None)
@given(raw=st.one_of(tricky_paths, tricky_queries.map(lambda pq: f"/{pq[0]}?{pq[1]}"), any_text, plain_paths))
def test_fast_and_full_paths_agree(raw: str) -> None:
    assert outcome(normalize_path, raw) == outcome(full_normalize_path, raw)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(raw=plain_paths)
def test_plain_paths_take_the_fast_path_and_come_back_unchanged(raw: str) -> None:
    if "//" in raw.partition("?")[0]:  # an empty segment between two slashes: not plain
        assert _PLAIN.fullmatch(raw) is None
        return
    assert _PLAIN.fullmatch(raw) is not None
    assert normalize_path(raw) == full_normalize_path(raw) == raw


@pytest.mark.parametrize(
    "raw",
    ["/a/./b", "/a/..", "/a/..;x", "/a//b", "/%2e%2e/x", "/a%2fb", "/a\\b", "/a@b", "/a#b", "/a b",
     "/a\nb", "/a?x=%0d%0a", "/a?x=%", "/\uff0e\uff0e/x", "//evil", "/a/\x00"],
)  # fmt: skip
def test_what_the_fast_path_leaves_to_the_full_check_is_still_refused(raw: str) -> None:
    assert _PLAIN.fullmatch(raw) is None
    with pytest.raises(UnsafePath):
        normalize_path(raw)


def test_the_length_limit_holds_on_the_fast_path() -> None:
    longest = "/" + "a" * (MAX_PATH_LENGTH - 1)
    assert normalize_path(longest) == longest
    with pytest.raises(UnsafePath, match=r"^path: must be at most"):
        normalize_path(longest + "a")


def test_plain_paths_with_dots_inside_segments_and_queries_are_kept() -> None:
    for raw in ("/", "/a/", "/v1.2/file.tar.gz", "/a;b=c/d?x=/../&y=?", "/x?", "/a/b.?q=."):
        assert _PLAIN.fullmatch(raw) is not None
        assert normalize_path(raw) == raw
