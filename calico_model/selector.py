"""Calico's label selector language: parser and matcher.

    expr  := and ('||' and)*
    and   := unary ('&&' unary)*
    unary := '!'* ( '(' expr ')' | 'all()' | 'global()' | 'has(' LABEL ')'
                  | LABEL ('==' | '!=' | 'contains' | 'starts with' | 'ends with') STRING
                  | LABEL ('in' | 'not in') '{' [STRING (',' STRING)* [',']] '}' )

`startswith`, `endswith` and `notin` are accepted as one word; only spaces and
tabs separate tokens; labels are at most MAX_LABEL characters.  These follow
Calico's tokenizer, as does the canonical text `str()` gives: values in double
quotes (single if the value holds a double quote), `&&` and `||` groups
always parenthesised, set members sorted.  An empty selector means all().

`parse` raises SelectorError naming the position of the problem.  Selectors
come from the datastore, so their size is bounded (MAX_LENGTH characters,
MAX_DEPTH levels of parentheses): the parser, matcher and printer recurse,
and a hostile value must fail validation rather than reach Python's
recursion limit.  Parsed selectors are immutable and hashable, and equal
selectors print the same canonical text, so they share an IP set.
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

MAX_LABEL = 512  # Calico's limit on a label name in a selector


def _quote(s: str) -> str:
    # Calico's canonical form: double quotes unless the value holds one.
    return f"'{s}'" if '"' in s else f'"{s}"'


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
    """`global()`: matches everything, as in Calico's evaluator.  Its meaning
    "not namespaced" exists only in a rule's namespaceSelector, where the policy
    compiler replaces it (see `namespace_scope`)."""

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
        vals = ", ".join(_quote(v) for v in sorted(self.values, key=str.encode))
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
        return f"!{self.inner}"


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
        return "(" + " && ".join(str(p) for p in self.parts) + ")"


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
        return "(" + " || ".join(str(p) for p in self.parts) + ")"


_IDENT = re.compile(r"[A-Za-z0-9_./\-]*")
_SPACE = " \t"  # the only whitespace Calico's tokenizer skips


def _is_boundary(text: str, pos: int) -> bool:
    return pos >= len(text) or not _IDENT.match(text, pos, pos + 1).group()  # type: ignore[union-attr]


class _Tokenizer:
    """Calico's tokenizer: after a label only an operator may follow (`not in`
    and `notin`, `starts with` and `startswith` alike); `has(`, `all(` and
    `global(` are written without a space before the parenthesis; labels are at
    most MAX_LABEL characters; strings have no escapes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)

    def run(self) -> list[tuple[str, str, int]]:
        text, pos, toks = self.text, 0, self.tokens
        while True:
            while pos < len(text) and text[pos] in _SPACE:
                pos += 1
            if pos >= len(text):
                return toks
            c = text[pos]
            after_label = bool(toks) and toks[-1][0] == "label"
            if c in "(){},":
                toks.append(("op", c, pos))
                pos += 1
            elif c in "'\"":
                end = text.find(c, pos + 1)
                if end < 0:
                    raise SelectorError(text, pos, "unterminated string")
                toks.append(("str", text[pos + 1 : end], pos))
                pos = end + 1
            elif text.startswith(("==", "!=", "&&", "||"), pos):
                toks.append(("op", text[pos : pos + 2], pos))
                pos += 2
            elif c == "!":
                toks.append(("op", "!", pos))
                pos += 1
            elif c in "=&|":
                raise SelectorError(text, pos, f"expected {c * 2!r}")
            elif after_label:
                pos = self._operator(pos)
            else:
                pos = self._word(pos)

    def _operator(self, pos: int) -> int:
        for name, words in _OPERATORS:
            end = self._cut_words(pos, words)
            if end is not None:
                self.tokens.append(("op", name, pos))
                return end
        label = self.tokens[-1][1]
        raise SelectorError(self.text, pos, f"expected an operator after label {label!r}")

    def _cut_words(self, pos: int, words: tuple[str, ...]) -> int | None:
        text = self.text
        for word in words:
            if not text.startswith(word, pos):
                return None
            pos += len(word)
            while pos < len(text) and text[pos] in _SPACE:
                pos += 1
        # trailing spaces were skipped; the boundary is checked after the last word
        end = pos
        while end > 0 and text[end - 1] in _SPACE:
            end -= 1
        return pos if _is_boundary(text, end) else None

    def _word(self, pos: int) -> int:
        text = self.text
        for fn in ("has(", "all(", "global("):
            if text.startswith(fn, pos):
                p = pos + len(fn)
                while p < len(text) and text[p] in _SPACE:
                    p += 1
                arg = ""
                if fn == "has(":
                    arg, p = self._ident(p)
                    while p < len(text) and text[p] in _SPACE:
                        p += 1
                if not text.startswith(")", p):
                    raise SelectorError(text, p, f"no closing ')' after {fn}")
                self.tokens.append((fn[:-1], arg, pos))
                return p + 1
        ident, end = self._ident(pos)
        self.tokens.append(("label", ident, pos))
        return end

    def _ident(self, pos: int) -> tuple[str, int]:
        m = _IDENT.match(self.text, pos)
        ident = m.group() if m else ""
        if not ident:
            found = self.text[pos : pos + 1] or "end"
            raise SelectorError(self.text, pos, f"expected a label name, found {found!r}")
        if len(ident) > MAX_LABEL:
            raise SelectorError(self.text, pos, f"label longer than {MAX_LABEL} characters")
        return ident, pos + len(ident)


# Longest spelling first: "in" must not win over "not in" (it cannot, but
# "notin" must not be read as a label either).
_OPERATORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contains", ("contains",)),
    ("starts with", ("starts", "with")),
    ("ends with", ("ends", "with")),
    ("not in", ("not", "in")),
    ("in", ("in",)),
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _Tokenizer(text).run()
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
        if v != value or kind != "op":
            raise SelectorError(self.text, pos, f"expected {value!r}, found {v or 'end'!r}")

    def string(self) -> str:
        kind, v, pos = self.take()
        if kind != "str":
            raise SelectorError(self.text, pos, f"expected a quoted string, found {v or 'end'!r}")
        return v

    def expr(self) -> Selector:
        parts = [self.conj()]
        while self.peek()[:2] == ("op", "||"):
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conj(self) -> Selector:
        parts = [self.unary()]
        while self.peek()[:2] == ("op", "&&"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Selector:
        # Like Calico, a run of '!' toggles one negation of the operation that follows.
        negated = False
        while self.peek()[:2] == ("op", "!"):
            self.take()
            negated = not negated
        sel = self.operation()
        return Not(sel) if negated else sel

    def operation(self) -> Selector:
        kind, v, pos = self.take()
        if kind == "has":
            return Has(v)
        if kind == "all":
            return All()
        if kind == "global":
            return Global()
        if (kind, v) == ("op", "("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise SelectorError(self.text, pos, f"nested deeper than {MAX_DEPTH} levels")
            inner = self.expr()
            self.expect(")")
            self.depth -= 1
            return inner
        if kind != "label":
            raise SelectorError(
                self.text, pos, f"expected a label or function, found {v or 'end'!r}"
            )
        return self.comparison(v)

    def comparison(self, key: str) -> Selector:
        kind, v, pos = self.take()
        if kind == "op" and v in ("==", "!=", "contains", "starts with", "ends with"):
            return Compare(key, v, self.string())
        if kind == "op" and v in ("in", "not in"):
            return In(key, self.values(), negated=v == "not in")
        raise SelectorError(
            self.text, pos, f"expected an operator after {key!r}, found {v or 'end'!r}"
        )

    def values(self) -> frozenset[str]:
        # Calico accepts an empty set and a trailing comma: {'a', 'b',}
        self.expect("{")
        out: set[str] = set()
        while self.peek()[0] == "str":
            out.add(self.string())
            if self.peek()[:2] != ("op", ","):
                break
            self.take()
        self.expect("}")
        return frozenset(out)


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


def replace_all(sel: Selector, all_: Selector, global_: Selector) -> Selector:
    """The same selector with every `all()` replaced by `all_` and every
    `global()` by `global_`: how Calico gives those two meaning inside a
    namespaceSelector."""
    if isinstance(sel, Global):
        return global_
    if isinstance(sel, All):
        return all_
    if isinstance(sel, Not):
        return Not(replace_all(sel.inner, all_, global_))
    if isinstance(sel, And):
        return And(tuple(replace_all(p, all_, global_) for p in sel.parts))
    if isinstance(sel, Or):
        return Or(tuple(replace_all(p, all_, global_) for p in sel.parts))
    return sel
