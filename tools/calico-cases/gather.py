"""Transcribe Calico's validator test table into JSON test cases.

Reads libcalico-go/lib/validator/v3/validator_test.go and the API types from a
checkout of projectcalico/calico, evaluates each `Entry(description, value,
valid)` whose value is a kind (or part of a kind) this system validates, and
writes one case per entry: the whole resource as Calico would store it, the
verdict Calico's validator gives, and where it came from.  Entries whose Go
expression uses something this small evaluator does not know are listed on
stderr and left out, never guessed.

    python3 tools/calico-cases/gather.py CALICO_CHECKOUT [COMMIT] \
        > tests/calico_model/data/calico_validator_cases.json

CALICO_CHECKOUT needs libcalico-go/lib/validator/v3, api/pkg/apis/projectcalico/v3,
api/pkg/lib/numorstring and libcalico-go/lib/apis/internalapi; COMMIT, the
commit they come from, is recorded in the output.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import sys
from pathlib import Path
from typing import Any

TEST_FILE = "libcalico-go/lib/validator/v3/validator_test.go"
TYPE_DIRS = (
    "api/pkg/apis/projectcalico/v3",
    "libcalico-go/lib/apis/internalapi",
    "api/pkg/lib/numorstring",
)


class Unknown(Exception):
    """The expression uses something the evaluator does not model."""


# -- tokens -------------------------------------------------------------------

TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
  | (?P<num>0[xX][0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>:=|\.\.\.|[{}()\[\],:&*+\-./<>!=|])
    """,
    re.S | re.X,
)


def tokenize(text: str) -> list[tuple[str, str]]:
    """Go source as (kind, text) tokens, comments and spaces dropped."""
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise Unknown(f"cannot tokenize at {text[pos : pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup or "", m.group()))
    return out


# -- the API's json names and constants ----------------------------------------

FIELD = re.compile(r"^\s*([A-Z]\w*)\s+[^`\n]*`[^`]*json:\"([^\",]*)")
CONST = re.compile(
    r"^\s*([A-Z]\w*)\s+(?:\w+\s+)?=\s+(?:\w+\()?(\"[^\"]*\"|-?[0-9._]+)\)?\s*(//.*)?$"
)


def read_types(root: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The API's Go field names mapped to their json names, and its constants."""
    json_names: dict[str, str] = {
        "Name": "name",
        "Namespace": "namespace",
        "Labels": "labels",
        "Annotations": "annotations",
        "GenerateName": "generateName",
        "ResourceVersion": "resourceVersion",
    }
    consts: dict[str, Any] = {}
    for d in TYPE_DIRS:
        for f in sorted((root / d).glob("*.go")):
            if f.name.endswith("_test.go") or f.name.startswith(("zz_", "generated")):
                continue
            for line in f.read_text().splitlines():
                if m := FIELD.match(line):
                    json_names.setdefault(m.group(1), m.group(2))
                elif m := CONST.match(line):
                    v = m.group(2)
                    v = v.replace("_", "")
                    consts[m.group(1)] = (
                        json.loads(v) if v.startswith('"') else float(v) if "." in v else int(v)
                    )
    return json_names, consts


# -- expressions ----------------------------------------------------------------


class Duration(int):
    """Nanoseconds, written as Go writes a time.Duration in JSON."""


def go_duration(ns: int) -> str:
    """Nanoseconds as Go's time.Duration.String writes them."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{sign}{_frac(ns, size)}{unit}"
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    s = _frac(rest, 1_000_000_000)
    if h:
        return f"{sign}{h}h{m}m{s}s"
    if m:
        return f"{sign}{m}m{s}s"
    return f"{sign}{s}s"


def _frac(n: int, size: int) -> str:
    whole, part = divmod(n, size)
    return f"{whole}.{str(part).rjust(len(str(size)) - 1, '0').rstrip('0')}" if part else str(whole)


DURATIONS = {
    "Nanosecond": 1,
    "Microsecond": 1_000,
    "Millisecond": 1_000_000,
    "Second": 10**9,
    "Minute": 60 * 10**9,
    "Hour": 3600 * 10**9,
}


NUM_OR_STRING_TYPES = {"numorstring.NumOrStringNum": 0, "numorstring.NumOrStringString": 1}


def port_json(lo: int, hi: int, name: str) -> Any:
    """A numorstring.Port as it marshals: its name, one number, or "lo:hi".
    A name with numbers has no stored form (Port's JSON drops the numbers),
    so such an entry tests only the Go API and is left out."""
    if name:
        if lo or hi:
            raise Unknown("a port with both a name and numbers has no JSON form")
        return name
    return lo if lo == hi else f"{lo}:{hi}"


class Parser:
    """Evaluates one Go expression of the test table to its JSON value."""

    def __init__(
        self,
        tokens: list[tuple[str, str]],
        env: dict[str, Any],
        names: dict[str, str],
        consts: dict[str, Any],
    ) -> None:
        self.t, self.i, self.env, self.names, self.consts = tokens, 0, env, names, consts

    def peek(self, k: int = 0) -> str:
        """The text of the token `k` ahead, or "" past the end."""
        return self.t[self.i + k][1] if self.i + k < len(self.t) else ""

    def take(self, want: str | None = None) -> str:
        """Consume one token (which must be `want` if given) and return its text."""
        tok = self.peek()
        if want is not None and tok != want:
            raise Unknown(f"expected {want!r}, got {tok!r}")
        self.i += 1
        return tok

    def expr(self) -> Any:
        """An expression: a unary expression with any binary + or - after it."""
        left = self.unary()
        while self.peek() in ("*", "+", "-"):
            op = self.take()
            right = self.unary()
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right)):
                raise Unknown("arithmetic on non-integers")
            value = left * right if op == "*" else left + right if op == "+" else left - right
            left = (
                Duration(value)
                if isinstance(left, Duration) or isinstance(right, Duration)
                else value
            )
        return left

    def unary(self) -> Any:
        """A unary expression: & or - or * applied to an operand."""
        tok = self.peek()
        if tok == "&":
            self.take()
            return self.unary()
        if tok == "-":
            self.take()
            v = self.unary()
            return -v
        kind = self.t[self.i][0]
        if kind == "str":
            self.take()
            return json.loads(tok) if tok.startswith('"') else tok[1:-1]
        if kind == "num":
            self.take()
            tok = tok.replace("_", "")
            return (
                int(tok, 16)
                if tok.lower().startswith("0x")
                else float(tok)
                if "." in tok or "e" in tok
                else int(tok)
            )
        if tok == "[" or tok == "map" or kind == "id":
            return self.operand()
        if tok == "{":
            return self.braces()
        if tok == "(":
            self.take()
            v = self.expr()
            self.take(")")
            return v
        raise Unknown(f"unexpected {tok!r}")

    def type_name(self) -> str:
        """A type (`api.Rule`, `[]string`, `map[string]string`, `*int`)."""
        parts = []
        while True:
            tok = self.peek()
            if tok == "[":
                self.take()
                if self.peek() != "]":
                    raise Unknown("array with a length")
                self.take("]")
                parts.append("[]")
            elif tok == "*":
                self.take()
            elif tok == "map":
                self.take()
                self.take("[")
                self.type_name()
                self.take("]")
                parts.append("map")
            else:
                break
        name = self.take()
        while self.peek() == "." and self.t[self.i + 1][0] == "id":
            self.take()
            name += "." + self.take()
        if self.peek() == "[" and self.peek(1) != "]" and name in ("ptr.To",):
            self.take()
            self.type_name()
            self.take("]")
        return "".join(parts) + name

    def operand(self) -> Any:
        """A literal, a name, a call, a composite literal or a slice of a name."""
        start = self.i
        name = self.type_name()
        if self.peek() == "{":
            return self.braces(name)
        if self.peek() == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.expr())
                if self.peek() == ",":
                    self.take()
            self.take(")")
            return self.call(name, args)
        if self.peek() == "[":  # slicing a variable: longValue[:63]
            self.take()
            lo = 0 if self.peek() == ":" else self.expr()
            self.take(":")
            hi = self.expr()
            self.take("]")
            return self.value_of(name)[lo:hi]
        del start
        return self.value_of(name)

    def value_of(self, name: str) -> Any:
        """The value a name stands for: a test variable, a constant, a literal."""
        if name in self.env:
            return self.env[name]
        if name in ("true", "false"):
            return name == "true"
        if name == "nil":
            return None
        pkg, _, ident = name.rpartition(".")
        if name in NUM_OR_STRING_TYPES:
            return NUM_OR_STRING_TYPES[name]
        if pkg == "time" and ident in DURATIONS:
            return Duration(DURATIONS[ident])
        if pkg in ("api", "internalapi", "numorstring", "v3") and ident in self.consts:
            return self.consts[ident]
        raise Unknown(f"unknown name {name}")

    def call(self, name: str, args: list[Any]) -> Any:
        """The value of a call to a helper or conversion the table uses."""
        one = args[0] if len(args) == 1 else None
        if (
            name
            in (
                "numorstring.ProtocolFromString",
                "numorstring.ProtocolFromInt",
                "numorstring.SinglePort",
                "numorstring.NamedPort",
                "ptr.To",
                "intHelper",
                "int32Helper",
                "protocolFromString",
                "protocolFromInt",
                "string",
                "float64",
                "int",
                "uint32",
                "uint8",
                "int32",
                "uint16",
                "uint64",
                "int64",
            )
            and len(args) == 1
        ):
            return one
        if name == "numorstring.ProtocolFromStringV1":
            return one
        if name in ("numorstring.PortFromRange", "mustParsePortRange") and len(args) == 2:
            return port_json(args[0], args[1], "")
        if name in ("numorstring.PortFromString",) and len(args) == 1:
            return one
        if (
            name.startswith(("api.", "internalapi.", "numorstring."))
            and len(args) == 1
            and not name.split(".")[1][0].islower()
            and isinstance(one, str | int | float)
        ):
            return one  # a conversion to a named type: api.IptablesBackend("x")
        if name == "time.Duration" and len(args) == 1:
            return Duration(one)
        if name == "strings.Repeat" and len(args) == 2:
            return args[0] * args[1]
        raise Unknown(f"unknown call {name}")

    def braces(self, type_name: str = "") -> Any:
        """A composite literal of `type_name`, as the type marshals to JSON."""
        self.take("{")
        keyed: dict[str, Any] = {}
        positional: list[Any] = []
        while self.peek() != "}":
            if self.t[self.i][0] == "id" and self.peek(1) == ":":
                key = self.take()
                self.take(":")
                keyed[key] = self.expr()
            elif self.t[self.i][0] == "str" and self.peek(1) == ":":
                key = self.unary()
                self.take(":")
                keyed[key] = self.expr()
            elif self.peek() == "{":  # an element whose type the slice gives
                positional.append(self.braces(type_name[2:] if type_name.startswith("[]") else ""))
            else:
                positional.append(self.expr())
            if self.peek() == ",":
                self.take()
        self.take("}")
        if (
            type_name.startswith("[]")
            or type_name in ("api.RouteTableRanges",)
            or (positional and not keyed)
        ):
            return [self.convert(v) for v in positional]
        if positional:
            raise Unknown("mixed positional and keyed elements")
        if type_name.startswith("map"):
            return {k: self.convert(v) for k, v in keyed.items()}
        if type_name == "numorstring.Protocol":  # Type 1 is NumOrStringString
            return keyed.get("StrVal", "") if keyed.get("Type") == 1 else keyed.get("NumVal", 0)
        if type_name == "numorstring.Port":
            return port_json(
                keyed.get("MinPort", 0), keyed.get("MaxPort", 0), keyed.get("PortName", "")
            )
        if type_name in ("v1.Duration", "metav1.Duration"):
            d = keyed.get("Duration", 0)
            return go_duration(int(d))
        out: dict[str, Any] = {}
        for k, v in keyed.items():
            inline = k in ("ObjectMeta", "TypeMeta")
            if inline and k == "TypeMeta":
                continue
            jname = "metadata" if k == "ObjectMeta" else self.names.get(k)
            if jname is None:
                raise Unknown(f"no json name for field {k}")
            if jname == "-":
                continue
            out[jname] = self.convert(v)
        return out

    @staticmethod
    def convert(v: Any) -> Any:
        """A value as it is written in JSON (durations as Go strings)."""
        if isinstance(v, Duration):
            return go_duration(int(v))
        return v


# -- the entries ------------------------------------------------------------------

VAR = re.compile(r"^\t(\w+)(?:, _)? :?= (.+)$")
TYPED_VAR = re.compile(r"^\tvar (\w+) [\w.]+ = (.+)$")


def read_env(src: str, names: dict[str, str], consts: dict[str, Any]) -> dict[str, Any]:
    """The variables the test file declares before its tables, evaluated."""
    env: dict[str, Any] = {}
    lines = src.splitlines()
    for line in lines:
        m = re.match(r"^\t(\w+) = (.+)$", line) or VAR.match(line) or TYPED_VAR.match(line)
        if not m:
            continue
        name, text = m.groups()
        try:
            env[name] = Parser(tokenize(text), env, names, consts).expr()
        except (Unknown, IndexError, ValueError):
            continue
    # Built by a loop in the Go source: 256 KiB of 'x'.
    env["maxAnnotationsLength"] = 256 * 1024
    env["longValue"] = "x" * env["maxAnnotationsLength"]
    env.update(value63="x" * 63, value64="x" * 64, maxNameLength=253)
    env["assignmentModeInvalid"] = ""  # new(api.AssignmentMode): the empty mode
    env.update(
        {
            "names.DefaultTierName": "default",
            "names.KubeAdminTierName": "kube-admin",
            "names.KubeBaselineTierName": "kube-baseline",
        }
    )
    return env


def entries(src: str) -> list[tuple[int, str, str]]:
    """(line, description, argument text) of each Entry of the two tables."""
    body = src[src.index('DescribeTable("Validator errors"') : src.index("e2e validation tests")]
    base = src[: src.index('DescribeTable("Validator errors"')].count("\n") + 1
    found = []
    for m in re.finditer(r"\bEntry\(", body):
        depth, j = 1, m.end()
        in_str = None
        while depth:
            c = body[j]
            if in_str:
                if c == "\\" and in_str == '"':
                    j += 1
                elif c == in_str:
                    in_str = None
            elif c in '"`':
                in_str = c
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            j += 1
        found.append((base + body[: m.start()].count("\n"), body[m.end() : j - 1]))
    in_errors_until = body.index('DescribeTable("Validator",')
    out = []
    for line, text in found:
        table = "errors" if (line - base) < body[:in_errors_until].count("\n") else "valid"
        out.append((line, table, text))
    return out


def split_args(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The tokens of an argument list, split at its top-level commas."""
    args, depth, cur = [], 0, []
    for tok in tokens:
        if tok[1] in "{([":
            depth += 1
        elif tok[1] in "})]":
            depth -= 1
        if tok[1] == "," and depth == 0:
            args.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        args.append(cur)
    return args


def main() -> None:
    """Write the cases for the checkout named on the command line."""
    root = Path(sys.argv[1])
    src = (root / TEST_FILE).read_text()
    names, consts = read_types(root)
    env = read_env(src[: src.index('DescribeTable("Validator errors"')], names, consts)
    cases, skipped, outside = [], 0, 0
    for line, table, text in entries(src):
        try:
            args = split_args(tokenize(text))
            desc = json.loads(args[0][0][1])
            type_name = Parser(args[1], env, names, consts).type_name_of()
            value = Parser(args[1], env, names, consts).expr()
            if table == "errors":
                valid = False
            else:
                verdict = Parser(args[2], env, names, consts).expr()
                if not isinstance(verdict, bool):
                    raise Unknown("verdict is not a bool")
                valid = verdict
        except (Unknown, IndexError, KeyError, ValueError, TypeError) as exc:
            print(f"line {line}: skipped: {exc}", file=sys.stderr)
            skipped += 1
            continue
        placed = place(type_name, value)
        if placed is None:
            outside += 1
            continue
        key, resource = placed
        cases.append(
            {
                "line": line,
                "description": desc,
                "go_type": type_name,
                "valid": valid,
                "key": key,
                "value": compact(resource),
            }
        )
    json.dump(
        {
            "source": TEST_FILE,
            "calico_commit": sys.argv[2] if len(sys.argv) > 2 else "",
            "cases": cases,
        },
        sys.stdout,
        indent=1,
        ensure_ascii=False,
    )
    sys.stdout.write("\n")
    print(
        f"{len(cases)} cases written; {outside} entries of kinds this system does not "
        f"serve, {skipped} not evaluated",
        file=sys.stderr,
    )


def compact(v: Any) -> Any:
    """`v` with each long run of one character (the annotation-size entries
    hold 256 KiB of "x") written as {"$repeat": char, "count": n}."""
    if isinstance(v, str) and len(v) > 1024 and len(set(v)) == 1:
        return {"$repeat": v[0], "count": len(v)}
    if isinstance(v, dict):
        return {k: compact(x) for k, x in v.items()}
    if isinstance(v, list):
        return [compact(x) for x in v]
    return v


# Go type of a whole resource -> (kind, plural, namespaced)
RESOURCES = {
    "api.FelixConfiguration": ("FelixConfiguration", "felixconfigurations", False),
    "api.GlobalNetworkPolicy": ("GlobalNetworkPolicy", "globalnetworkpolicies", False),
    "api.NetworkPolicy": ("NetworkPolicy", "networkpolicies", True),
    "api.IPPool": ("IPPool", "ippools", False),
    "api.Tier": ("Tier", "tiers", False),
    "api.HostEndpoint": ("HostEndpoint", "hostendpoints", False),
    "api.Profile": ("Profile", "profiles", False),
    "internalapi.Node": ("Node", "nodes", False),
    "internalapi.WorkloadEndpoint": ("WorkloadEndpoint", "workloadendpoints", True),
}
# Go type of a spec -> the resource it is the spec of
SPECS = {
    "api.FelixConfigurationSpec": "api.FelixConfiguration",
    "api.IPPoolSpec": "api.IPPool",
    "api.HostEndpointSpec": "api.HostEndpoint",
    "api.ProfileSpec": "api.Profile",
    "internalapi.NodeSpec": "internalapi.Node",
    "internalapi.WorkloadEndpointSpec": "internalapi.WorkloadEndpoint",
}


def _rule_spec(rule: dict[str, Any]) -> dict[str, Any]:
    """A policy spec holding `rule` where Calico's rule checks alone decide:
    service matches are only allowed in an egress rule's destination."""
    direction = "egress" if "services" in rule.get("destination", {}) else "ingress"
    return {direction: [rule]}


def _part(type_name: str, value: Any) -> tuple[str, Any] | None:
    """A piece of a resource, placed in the smallest resource that holds it."""
    if type_name == "api.Rule":
        return "api.NetworkPolicy", {"spec": _rule_spec(value)}
    if type_name == "api.EntityRule":
        return "api.NetworkPolicy", {"spec": _rule_spec({"action": "Allow", "source": value})}
    if type_name == "api.ICMPFields":
        rule = {"action": "Allow", "protocol": "ICMP", "icmp": value}
        return "api.NetworkPolicy", {"spec": _rule_spec(rule)}
    if type_name == "api.HTTPMatch":
        return "api.NetworkPolicy", {"spec": _rule_spec({"action": "Allow", "http": value})}
    if type_name in ("protocolFromString", "protocolFromInt", "numorstring.Protocol"):
        rule = {"action": "Allow", "protocol": value}
        return "api.NetworkPolicy", {"spec": _rule_spec(rule)}
    if type_name == "api.ProtoPort":
        return "api.FelixConfiguration", {"spec": {"failsafeInboundHostPorts": [value]}}
    # An endpoint needs an interface, and a NAT needs the endpoint to own its
    # internal address: supplied, so the entry's own value decides.
    if type_name == "internalapi.WorkloadEndpointPort":
        return "internalapi.WorkloadEndpoint", {
            "spec": {"interfaceName": "cali0", "ports": [value]}
        }
    if type_name == "internalapi.IPNAT":
        spec = {"interfaceName": "cali0", "ipNATs": [value]}
        with contextlib.suppress(ValueError):
            spec["ipNetworks"] = [str(ipaddress.ip_network(value.get("internalIP", "")))]
        return "internalapi.WorkloadEndpoint", {"spec": spec}
    if type_name in SPECS:
        return SPECS[type_name], {"spec": value}
    if type_name in RESOURCES:
        return type_name, value
    return None


def place(type_name: str, value: Any) -> tuple[str, dict[str, Any]] | None:
    """(etcd key, resource) for an entry, or None for a kind not served here.
    A name and namespace are supplied where the entry is only a part, as the
    API client supplies them; a whole resource keeps its own, so an entry
    about a bad or missing name still tests that."""
    part = _part(type_name, value)
    if part is None:
        return None
    rtype, body = part
    kind, plural, namespaced = RESOURCES[rtype]
    whole = rtype == type_name
    meta = dict(body.get("metadata", {}))
    if not whole:
        meta.setdefault("name", "default" if kind == "FelixConfiguration" else "case")
        if namespaced:
            meta.setdefault("namespace", "default")
    elif namespaced:
        meta.setdefault("namespace", "default")  # the client's default namespace
    resource = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta}
    resource["spec"] = body.get("spec", {})
    name = meta.get("name") or "-"
    ns = f"{meta['namespace']}/" if namespaced else ""
    return f"/calico/resources/v3/projectcalico.org/{plural}/{ns}{name}", resource


def _type_name_of(self: Parser) -> str:
    if self.peek() == "&":
        self.take()
    if self.t[self.i][0] != "id" and self.peek() != "[":
        return ""
    name = self.type_name()
    return name


Parser.type_name_of = _type_name_of  # type: ignore[attr-defined]

if __name__ == "__main__":
    main()
