"""Calico's label selector expressions (projectcalico.org/v3 ``selector``, ``namespaceSelector``). Pure.

Grammar, as Calico documents it: ``all()``, ``global()``, ``has(k)``, ``k == 'v'``, ``k != 'v'``,
``k in {'a', 'b'}``, ``k not in {...}``, ``k contains 's'``, ``k starts with 's'``, ``k ends with 's'``,
``!``, ``&&``, ``||`` and parentheses (``!`` binds tightest, then ``&&``, then ``||``). ``k != 'v'`` and
``k not in {...}`` are true for an object without the label. ``global()`` matches only non-namespaced endpoints
(host endpoints), so in a pod-only lab it matches nothing. An empty selector means ``all()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Labels = Mapping[str, str]

_TOKEN = re.compile(r"""\s*(?:
    (?P<str>'[^']*'|"[^"]*")
  | (?P<op>==|!=|&&|\|\||!|\(|\)|\{|\}|,)
  | (?P<word>[A-Za-z0-9_./-]+)
)""", re.VERBOSE)


class SelectorError(ValueError):
    """A selector that does not parse; the message says where and why."""


@dataclass(frozen=True)
class Selector:
    text: str
    match: Callable[[Labels], bool]
    canonical: str  # a normal form (for hashing: equal selectors share an ipset)

    def __call__(self, labels: Labels) -> bool:
        return self.match(labels)


def _tokens(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SelectorError(f"unexpected {text[pos:pos + 10]!r} at character {pos + 1}")
        tokens.append(m.group(m.lastgroup))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self, ahead: int = 0) -> str | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, expected: str | None = None, what: str = "") -> str:
        token = self.peek()
        if token is None:
            wanted = what or (repr(expected) if expected else "")
            raise SelectorError(f"ends early{f' (expected {wanted})' if wanted else ''}")
        if expected is not None and token != expected:
            raise SelectorError(f"expected {expected!r}, found {token!r}")
        self.pos += 1
        return token

    def parse(self) -> tuple[Callable[[Labels], bool], str]:
        if not self.tokens:
            return (lambda _labels: True), "all()"
        result = self.or_expr()
        if self.peek() is not None:
            raise SelectorError(f"unexpected {self.peek()!r} after a complete expression")
        return result

    def or_expr(self) -> tuple[Callable[[Labels], bool], str]:
        parts = [self.and_expr()]
        while self.peek() == "||":
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        fns = [p[0] for p in parts]
        return (lambda labels: any(f(labels) for f in fns)), "(" + " || ".join(p[1] for p in parts) + ")"

    def and_expr(self) -> tuple[Callable[[Labels], bool], str]:
        parts = [self.unary()]
        while self.peek() == "&&":
            self.take()
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        fns = [p[0] for p in parts]
        return (lambda labels: all(f(labels) for f in fns)), "(" + " && ".join(p[1] for p in parts) + ")"

    def unary(self) -> tuple[Callable[[Labels], bool], str]:
        token = self.peek()
        if token == "!":
            self.take()
            fn, text = self.unary()
            return (lambda labels: not fn(labels)), f"!{text}"
        if token == "(":
            self.take()
            result = self.or_expr()
            self.take(")")
            return result
        return self.term()

    def string(self) -> str:
        token = self.take(what="a quoted string")
        if len(token) < 2 or token[0] not in "'\"" or token[-1] != token[0]:
            raise SelectorError(f"expected a quoted string, found {token!r}")
        return token[1:-1]

    def key(self) -> str:
        token = self.take(what="a label key")
        if not re.fullmatch(r"[A-Za-z0-9_./-]+", token):
            raise SelectorError(f"expected a label key, found {token!r}")
        return token

    def term(self) -> tuple[Callable[[Labels], bool], str]:
        token = self.peek()
        if token in ("all", "global") and self.peek(1) == "(":
            self.take(), self.take("("), self.take(")")
            if token == "all":
                return (lambda _labels: True), "all()"
            return (lambda _labels: False), "global()"
        if token == "has" and self.peek(1) == "(":
            self.take(), self.take("(")
            key = self.key()
            self.take(")")
            return (lambda labels: key in labels), f"has({key})"
        key = self.key()
        op = self.peek()
        if op in ("==", "!="):
            self.take()
            value = self.string()
            if op == "==":
                return (lambda labels: labels.get(key) == value), f"{key} == {value!r}"
            return (lambda labels: labels.get(key) != value), f"{key} != {value!r}"
        if op == "in" or (op == "not" and self.peek(1) == "in"):
            negate = self.take() == "not"
            if negate:
                self.take("in")
            values = self.value_set()
            shown = "{" + ", ".join(repr(v) for v in sorted(values)) + "}"
            if negate:
                return (lambda labels: labels.get(key) not in values), f"{key} not in {shown}"
            return (lambda labels: labels.get(key) in values), f"{key} in {shown}"
        if op == "contains":
            self.take()
            value = self.string()
            return (lambda labels: key in labels and value in labels[key]), f"{key} contains {value!r}"
        if op in ("starts", "ends") and self.peek(1) == "with":
            self.take(), self.take()
            value = self.string()
            if op == "starts":
                return (lambda labels: key in labels and labels[key].startswith(value)), f"{key} starts with {value!r}"
            return (lambda labels: key in labels and labels[key].endswith(value)), f"{key} ends with {value!r}"
        raise SelectorError(f"expected ==, !=, in, not in, contains, starts with or ends with after {key!r}, "
                            f"found {op!r}")

    def value_set(self) -> frozenset[str]:
        self.take("{")
        values = []
        while self.peek() != "}":
            values.append(self.string())
            if self.peek() == ",":
                self.take()
            elif self.peek() != "}":
                raise SelectorError(f"expected ',' or '}}' in a value set, found {self.peek()!r}")
        self.take("}")
        return frozenset(values)


def parse_selector(text: str) -> Selector:
    """Parse a Calico selector; raises SelectorError with the reason."""
    if not isinstance(text, str):
        raise SelectorError("must be a string")
    fn, canonical = _Parser(text).parse()
    return Selector(text, fn, canonical)
