"""Calico's label selector language: parser and matcher.

    expr  := and ('||' and)*
    and   := unary ('&&' unary)*
    unary := '!' unary | '(' expr ')' | 'all()' | 'global()' | 'has(' LABEL ')'
           | LABEL ('==' | '!=') STRING
           | LABEL ['not'] 'in' '{' [STRING (',' STRING)*] '}'
           | LABEL 'contains' STRING | LABEL 'starts' 'with' STRING | LABEL 'ends' 'with' STRING

An empty selector means all().  `parse` raises SelectorError naming the
position of the problem.  Selectors come from the datastore, so their size is
bounded (MAX_LENGTH characters, MAX_DEPTH levels of `!` and parentheses): the
parser, matcher and printer recurse, and a hostile value must fail validation
rather than reach Python's recursion limit.  Parsed selectors are immutable and hashable, and
`str()` gives a canonical text, so equal selectors can share an IP set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from calico_model.errors import SelectorError

Labels = Mapping[str, str]

MAX_LENGTH = 4096
MAX_DEPTH = 32

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>&&|\|\||==|!=|[!(){},])
    | (?P<str>'[^']*'|"[^"]*")
    | (?P<word>[A-Za-z0-9_./\-]+)
    )""",
    re.VERBOSE,
)


def _quote(s: str) -> str:
    return f"'{s}'" if "'" not in s else f'"{s}"'


class Selector:
    """A parsed label selector.  Immutable and hashable; `str()` gives its canonical text, which
    names the IP set built from it."""

    __slots__ = ()

    def matches(self, labels: Labels) -> bool:
        """True if `labels` satisfy the selector."""
        raise NotImplementedError

    def labels_used(self) -> frozenset[str]:
        """Label keys this selector reads (for indexing)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class All(Selector):
    """`all()`: matches everything."""

    def matches(self, labels: Labels) -> bool:
        """Always True."""
        return True

    def labels_used(self) -> frozenset[str]:
        """None: `all()` reads no label."""
        return frozenset()

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global(All):
    """`global()`: matches what `all()` matches here; kept distinct so its text survives."""

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has(Selector):
    """`has(key)`: the label is present, whatever its value."""

    key: str

    def matches(self, labels: Labels) -> bool:
        """True if the label is present."""
        return self.key in labels

    def labels_used(self) -> frozenset[str]:
        """The one label it reads."""
        return frozenset((self.key,))

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True, slots=True)
class Compare(Selector):
    """`key op value` for the comparison operators (==, !=, contains, starts/ends with)."""

    key: str
    op: str  # ==, !=, contains, starts with, ends with
    value: str

    def matches(self, labels: Labels) -> bool:
        """Compare the label's value (absent counts as not equal)."""
        v = labels.get(self.key)
        if self.op == "==":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        if v is None:
            return False
        if self.op == "contains":
            return self.value in v
        if self.op == "starts with":
            return v.startswith(self.value)
        return v.endswith(self.value)

    def labels_used(self) -> frozenset[str]:
        """The one label it reads."""
        return frozenset((self.key,))

    def __str__(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class In(Selector):
    """`key in {...}` or `key not in {...}`."""

    key: str
    values: frozenset[str]
    negated: bool = False

    def matches(self, labels: Labels) -> bool:
        """True if the label's value is (or is not) in the set."""
        return (labels.get(self.key) in self.values) != self.negated

    def labels_used(self) -> frozenset[str]:
        """The one label it reads."""
        return frozenset((self.key,))

    def __str__(self) -> str:
        vals = ", ".join(_quote(v) for v in sorted(self.values))
        return f"{self.key} {'not in' if self.negated else 'in'} {{{vals}}}"


@dataclass(frozen=True, slots=True)
class Not(Selector):
    """`!expr`."""

    inner: Selector

    def matches(self, labels: Labels) -> bool:
        """The negation of the inner selector."""
        return not self.inner.matches(labels)

    def labels_used(self) -> frozenset[str]:
        """The labels the inner selector reads."""
        return self.inner.labels_used()

    def __str__(self) -> str:
        return f"!({self.inner})"


@dataclass(frozen=True, slots=True)
class And(Selector):
    """`a && b && ...`."""

    parts: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        """True if every part matches."""
        return all(p.matches(labels) for p in self.parts)

    def labels_used(self) -> frozenset[str]:
        """The labels any part reads."""
        return frozenset().union(*(p.labels_used() for p in self.parts))

    def __str__(self) -> str:
        return " && ".join(f"({p})" if isinstance(p, Or) else str(p) for p in self.parts)


@dataclass(frozen=True, slots=True)
class Or(Selector):
    """`a || b || ...`."""

    parts: tuple[Selector, ...]

    def matches(self, labels: Labels) -> bool:
        """True if any part matches."""
        return any(p.matches(labels) for p in self.parts)

    def labels_used(self) -> frozenset[str]:
        """The labels any part reads."""
        return frozenset().union(*(p.labels_used() for p in self.parts))

    def __str__(self) -> str:
        return " || ".join(str(p) for p in self.parts)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                start = pos + (len(text[pos:]) - len(text[pos:].lstrip()))
                raise SelectorError(text, start, f"unexpected character {text[start]!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        if self.i < len(self.tokens):
            return self.tokens[self.i]
        return ("end", "", len(self.text))

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, v, pos = self.take()
        if v != value or kind == "str":
            raise SelectorError(self.text, pos, f"expected {value!r}, found {v or 'end'!r}")

    def string(self) -> str:
        kind, v, pos = self.take()
        if kind != "str":
            raise SelectorError(self.text, pos, f"expected a quoted string, found {v or 'end'!r}")
        return v[1:-1]

    def expr(self) -> Selector:
        parts = [self.conj()]
        while self.peek()[1] == "||" and self.peek()[0] == "op":
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conj(self) -> Selector:
        parts = [self.unary()]
        while self.peek()[1] == "&&" and self.peek()[0] == "op":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Selector:
        kind, v, pos = self.take()
        if kind == "op" and v in ("!", "("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise SelectorError(self.text, pos, f"nested deeper than {MAX_DEPTH} levels")
            inner: Selector
            if v == "!":
                inner = Not(self.unary())
            else:
                inner = self.expr()
                self.expect(")")
            self.depth -= 1
            return inner
        if kind != "word":
            raise SelectorError(
                self.text, pos, f"expected a label or function, found {v or 'end'!r}"
            )
        if v in ("all", "global", "has") and self.peek()[1] == "(":
            self.take()
            if v == "has":
                k2, label, p2 = self.take()
                if k2 != "word":
                    raise SelectorError(self.text, p2, "has() needs a label name")
                self.expect(")")
                return Has(label)
            self.expect(")")
            return All() if v == "all" else Global()
        return self.comparison(v)

    def comparison(self, key: str) -> Selector:
        kind, v, pos = self.take()
        if kind == "op" and v in ("==", "!="):
            return Compare(key, v, self.string())
        if kind == "word" and v == "not":
            self.expect("in")
            return In(key, self.values(), negated=True)
        if kind == "word" and v == "in":
            return In(key, self.values())
        if kind == "word" and v == "contains":
            return Compare(key, "contains", self.string())
        if kind == "word" and v in ("starts", "ends"):
            self.expect("with")
            return Compare(key, f"{v} with", self.string())
        raise SelectorError(
            self.text, pos, f"expected an operator after {key!r}, found {v or 'end'!r}"
        )

    def values(self) -> frozenset[str]:
        self.expect("{")
        out: set[str] = set()
        if self.peek()[1] == "}" and self.peek()[0] == "op":
            self.take()
            return frozenset()
        while True:
            out.add(self.string())
            kind, v, pos = self.take()
            if kind == "op" and v == "}":
                return frozenset(out)
            if not (kind == "op" and v == ","):
                raise SelectorError(self.text, pos, f"expected ',' or '}}', found {v or 'end'!r}")


@lru_cache(maxsize=4096)
def parse(text: str) -> Selector:
    """Parse a selector; raises SelectorError.  Results are cached: policies
    repeat the same few selectors many times."""
    if len(text) > MAX_LENGTH:
        raise SelectorError(text[:40] + "...", MAX_LENGTH, f"longer than {MAX_LENGTH} characters")
    if not text.strip():
        return All()
    p = _Parser(text)
    sel = p.expr()
    kind, v, pos = p.peek()
    if kind != "end":
        raise SelectorError(text, pos, f"unexpected {v!r} after a complete selector")
    return sel


def prefixed(sel: Selector, prefix: str) -> Selector:
    """The same selector reading `prefix + key` for every label key.  Calico
    matches namespaceSelectors against namespace labels that endpoints
    inherit under the `pcns.` prefix."""
    if isinstance(sel, Has):
        return Has(prefix + sel.key)
    if isinstance(sel, Compare):
        return Compare(prefix + sel.key, sel.op, sel.value)
    if isinstance(sel, In):
        return In(prefix + sel.key, sel.values, sel.negated)
    if isinstance(sel, Not):
        return Not(prefixed(sel.inner, prefix))
    if isinstance(sel, And):
        return And(tuple(prefixed(p, prefix) for p in sel.parts))
    if isinstance(sel, Or):
        return Or(tuple(prefixed(p, prefix) for p in sel.parts))
    return sel  # all(), global()


def conjoin(*parts: Selector) -> Selector:
    """`a && b`, dropping all() terms."""
    kept = tuple(p for p in parts if not isinstance(p, All))
    if not kept:
        return All()
    return kept[0] if len(kept) == 1 else And(kept)
