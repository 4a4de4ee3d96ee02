from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico_model.errors import SelectorError
from calico_model.selector import All, parse

L = {"app": "web", "tier": "frontend", "projectcalico.org/namespace": "shop"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("all()", True),
        ("app == 'web'", True),
        ('app == "db"', False),
        ("app != 'db'", True),
        ("missing != 'x'", True),  # absent labels are "not equal"
        ("has(app)", True),
        ("!has(app)", False),
        ("has(projectcalico.org/namespace)", True),
        ("app in {'web', 'db'}", True),
        ("app not in {'web'}", False),
        ("missing not in {'x'}", True),
        ("app in {}", False),
        ("app == 'web' && tier == 'backend'", False),
        ("app == 'db' || tier == 'frontend'", True),
        ("!(app == 'db' || tier == 'backend')", True),
        ("app == 'web' && (tier == 'x' || has(app))", True),
        ("app contains 'e'", True),
        ("app starts with 'w'", True),
        ("app ends with 'x'", False),
        ("missing contains 'x'", False),
    ],
)
def test_matching(text: str, expected: bool) -> None:
    assert parse(text).matches(L) is expected


def test_and_binds_tighter_than_or() -> None:
    # a || b && c  ==  a || (b && c)
    sel = parse("app == 'web' || tier == 'x' && has(nothing)")
    assert sel.matches(L)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("app ==", 6),
        ("app = 'web'", 4),
        ("(app == 'web'", 13),
        ("app == 'web' &&", 15),
        ("has()", 4),
        ("app in {'a' 'b'}", 12),
        ("app == 'web' garbage", 13),
        ("app == 'unterminated", 7),
        ("app ~ 'x'", 4),
    ],
)
def test_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    assert info.value.position == position
    assert text in str(info.value)


def test_canonical_text_round_trips_and_equal_selectors_are_equal() -> None:
    a = parse("app in {'b', 'a'} && !has(x)")
    b = parse("app in {'a','b'}&&!has(x)")
    assert a == b
    assert hash(a) == hash(b)
    assert parse(str(a)) == a
    assert parse("") == All()
    assert a.labels_used() == frozenset({"app", "x"})


label = st.sampled_from(["app", "tier", "x"])
value = st.sampled_from(["web", "db", "frontend", ""])


@st.composite
def selectors(draw: st.DrawFn, depth: int = 0) -> str:
    leaf = st.one_of(
        st.builds(lambda k, v: f"{k} == '{v}'", label, value),
        st.builds(lambda k, v: f"{k} != '{v}'", label, value),
        st.builds(lambda k: f"has({k})", label),
        st.builds(
            lambda k, vs: f"{k} in {{{', '.join(repr(v) for v in vs)}}}",
            label,
            st.lists(value, max_size=3),
        ),
        st.just("all()"),
    )
    if depth > 2:
        return draw(leaf)
    sub = selectors(depth=depth + 1)
    return draw(
        st.one_of(
            leaf,
            st.builds(lambda a, b: f"({a}) && ({b})", sub, sub),
            st.builds(lambda a, b: f"({a}) || ({b})", sub, sub),
            st.builds(lambda a: f"!({a})", sub),
        )
    )


@given(selectors(), st.dictionaries(label, value, max_size=3))
def test_canonical_form_matches_the_same_labels(text: str, labels: dict[str, str]) -> None:
    sel = parse(text)
    assert parse(str(sel)).matches(labels) == sel.matches(labels)


# -- Calico's tokenizer and canonical form ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a startswith 'x'", 'a starts with "x"'),
        ("a endswith'x'", 'a ends with "x"'),
        ("a notin {'x'}", 'a not in {"x"}'),
        ("a not   in {'y', 'x',}", 'a not in {"x", "y"}'),  # trailing comma, sorted
        ("a in {}", "a in {}"),
        ("a == 'b' && c == 'd' || e == 'f'", '((a == "b" && c == "d") || e == "f")'),
        ("!(a == 'b')", '!a == "b"'),
        ("!!has(a)", "has(a)"),
        ("!(a == 'b' || has(c))", '!(a == "b" || has(c))'),
        ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
        ("\thas( a )", "has(a)"),
        ("global()", "global()"),
    ],
)
def test_canonical_text_is_calicos(text: str, canonical: str) -> None:
    assert str(parse(text)) == canonical
    assert parse(canonical) == parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "a\n== 'b'",  # only spaces and tabs separate tokens
        "has (a)",  # the function name touches its parenthesis
        "a in {'x',,}",
        "a b",
        "a = 'b'",
        "a & b",
        "a" * 513 + " == 'b'",  # labels are at most 512 characters
        "has(" + "a" * 513 + ")",
        "a containsx 'b'",
    ],
)
def test_what_calicos_tokenizer_refuses(text: str) -> None:
    with pytest.raises(SelectorError):
        parse(text)


def test_a_label_of_512_characters_is_fine() -> None:
    assert parse("a" * 512 + " == 'b'").matches({"a" * 512: "b"})
