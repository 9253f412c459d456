"""Mutations of real manifests (the samples, the golden inputs) for fuzzing the config path.

Three families, as the issue that measured the control plane's bad-input behaviour used:

* textual: characters, lines and tokens of the YAML text changed (control characters, tags, anchors,
  deep nesting, huge integers, broken indentation);
* structural: a parsed document's keys deleted, renamed or added, values moved between types;
* values: a field's value replaced by one from a pool of edge cases (protobuf range limits, regexes
  Python accepts and RE2 does not, bad CIDRs, durations out of range, reserved ports, ...).

Every mutation is a pure function of a `random.Random`, so a failing case is reproduced by its seed.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def corpus_files() -> list[Path]:
    """The manifests mutated: the samples' YAML and every golden case's input."""
    files = sorted((ROOT / "samples").rglob("*.yaml")) + sorted((ROOT / "tests" / "golden").glob("*/in.yaml"))
    return [f for f in files if f.is_file()]


def corpus() -> list[tuple[str, str]]:
    out = []
    for f in corpus_files():
        text = f.read_text()
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            continue
        if any(isinstance(d, dict) and "kind" in d for d in docs):
            out.append((str(f.relative_to(ROOT)), text))
    return out


# ---------------------------------------------------------------------------- value pool

NASTY_VALUES: list[Any] = [
    "",
    " ",
    "*",
    "*.",
    ".",
    "~",
    "-",
    "/",
    "a" * 300,
    "x" * 20000,
    "\t",
    "a\nb",
    "a\x00b",
    "\u2028",
    "é",
    "UPPER",
    "a..b",
    "-a",
    "a_b",
    "1.2.3.4",
    "1.2.3.4/-1",
    "1.2.3.4/33",
    "::/129",
    "10.0.0.0/8",
    "x",
    "abc",
    "0",
    "65536",
    "15001",
    "(a)\\1",
    "(?=x)",
    "(?!x)",
    "(?<=x)a",
    "a{1001}",
    "a{2,1}",
    "[",
    "(",
    "\\",
    "a**",
    "(?P<n>a)(?P=n)",
    "\\Z",
    "2562048h",
    "-1s",
    "0s",
    "1ns",
    "1.5",
    "1e3s",
    "315576000001s",
    "99999999999999999999s",
    "1h1h",
    "https://x",
    "spiffe://cluster.local/ns/a/sa/b",
    "ECDHE-FOO",
    "/no/such/file",
    "*.example.com",
    "foo.*",
    "a" * 64,
    "outbound|9080||x",
    "%",
    "%{",
    "\r\n",
    "<<",
    "true",
    "null",
    0,
    -1,
    1,
    7,
    100,
    101,
    1000,
    65535,
    65536,
    15000,
    15001,
    15006,
    15020,
    15021,
    15090,
    2**31 - 1,
    2**31,
    2**32,
    2**32 - 1,
    2**53,
    2**63,
    2**64,
    10**30,
    10000000,
    8388608,
    8388609,
    65537,
    1.5,
    -0.5,
    1e308,
    1e-320,
    float("inf"),
    float("nan"),
    True,
    False,
    None,
    [],
    {},
    [None],
    [""],
    ["*"],
    {"a": None},
    {"": ""},
    {"exact": ""},
    {"regex": "(a)\\1"},
    {"regex": "a{1001}"},
    {"prefix": ""},
    [{"a": 1}],
    ["abc"],
    [-1],
    [1, 1],
    ["1.2.3.4/-1"],
    ["x"] * 3,
]

# Text spliced into the YAML as it stands (things a Python value cannot be dumped as).
NASTY_TEXT: list[str] = [
    "9" * 5000,
    "-" + "9" * 4400,
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!float .nan",
    "!!int 0x",
    "!!timestamp 2001",
    "!custom x",
    "*undefined",
    "&a [*a]",
    "0x1F",
    "0o17",
    "1_000",
    "1:20",
    "~",
    "''",
    '"\\x00"',
    '"\\ud800"',
    "{",
    "]",
    "[" * 1200 + "]" * 1200,
    "? [a]\n: b",
    "!!python/object:os.system x",
    "&x\n",
    ".inf",
    "-.inf",
    '"' + "\\u0007" * 3 + '"',
    "|\n  block",
    ">-\n",
    "!!str",
    "!!map []",
    "!!seq {}",
    "!!bool maybe",
    "!!null x",
    "\x00",
    "\x07",
    "\x1b[31m",
    "\ufeff",
    "\x85",
    "\x7f",
    "\ud7ff",
    "\U0001f600",
]

INSERT_CHARS = [
    "\x00",
    "\x01",
    "\x07",
    "\x08",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "\x85",
    "\ufeff",
    "\ufffe",
    "\t",
    ":",
    "-",
    "&",
    "*",
    "!",
    "%",
    "@",
    "`",
    "|",
    ">",
    "'",
    '"',
    "{",
    "}",
    "[",
    "]",
    "#",
    ",",
    "?",
    "\n",
    " ",
    "é",
    "\u2028",
]


# ---------------------------------------------------------------------------- textual


def _lines(text: str) -> list[str]:
    return text.split("\n")


def insert_char(rng: random.Random, text: str) -> str:
    pos = rng.randrange(len(text) + 1)
    return text[:pos] + rng.choice(INSERT_CHARS) + text[pos:]


def delete_slice(rng: random.Random, text: str) -> str:
    if not text:
        return text
    a = rng.randrange(len(text))
    b = min(len(text), a + rng.choice([1, 2, 5, 20, 200]))
    return text[:a] + text[b:]


def duplicate_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return "\n".join(lines)


def swap_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def reindent_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines[i] = (" " * rng.choice([1, 2, 4]) + lines[i]) if rng.random() < 0.5 else lines[i].lstrip()
    return "\n".join(lines)


def replace_scalar_text(rng: random.Random, text: str) -> str:
    """The value after some `key: ` replaced by a raw token (tags, anchors, huge numbers, control chars)."""
    lines = _lines(text)
    candidates = [i for i, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")]
    if not candidates:
        return text + "\n" + rng.choice(NASTY_TEXT)
    i = rng.choice(candidates)
    head = lines[i].split(": ", 1)[0]
    lines[i] = f"{head}: {rng.choice(NASTY_TEXT)}"
    return "\n".join(lines)


def replace_key_text(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    candidates = [i for i, line in enumerate(lines) if ":" in line]
    if not candidates:
        return text
    i = rng.choice(candidates)
    line = lines[i]
    indent = line[: len(line) - len(line.lstrip())]
    body = line.lstrip()
    dash = "- " if body.startswith("- ") else ""
    rest = body[len(dash) :].split(":", 1)
    key = rng.choice(
        [
            "null",
            "~",
            "1",
            "true",
            "on",
            "<<",
            "? x",
            "!!binary aG9zdHM=",
            "[a]",
            "{a: b}",
            "''",
            rest[0][:-1] or "x",
            rest[0] + rest[0],
            rest[0].upper(),
            "0x10",
            "hosts",
            "8080",
        ]
    )
    lines[i] = indent + dash + key + ":" + (rest[1] if len(rest) > 1 else "")
    return "\n".join(lines)


def anchor_alias(rng: random.Random, text: str) -> str:
    """An anchor on one value and aliases to it elsewhere (also a self-reference)."""
    lines = _lines(text)
    candidates = [i for i, line in enumerate(lines) if line.rstrip().endswith(":") or ": " in line]
    if len(candidates) < 2:
        return text
    i, j = sorted(rng.sample(candidates, 2))
    li = lines[i]
    if li.rstrip().endswith(":"):
        lines[i] = li.rstrip() + " &a"
    else:
        head, value = li.split(": ", 1)
        lines[i] = f"{head}: &a {value}"
    lj = lines[j]
    head = lj.split(":", 1)[0]
    lines[j] = f"{head}: *a" if rng.random() < 0.8 else f"{head}: &a [*a]"
    return "\n".join(lines)


def truncate(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text) + 1)]


TEXT_MUTATIONS: list[Callable[[random.Random, str], str]] = [
    insert_char,
    delete_slice,
    duplicate_line,
    swap_lines,
    reindent_line,
    replace_scalar_text,
    replace_scalar_text,
    replace_key_text,
    anchor_alias,
    truncate,
]


# ---------------------------------------------------------------------------- structural / values


def _paths(value: Any) -> list[tuple[Any, ...]]:
    """Every path in a document, each container visited once (documents may share or contain themselves)."""
    out: list[tuple[Any, ...]] = []
    seen: set[int] = set()
    todo: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while todo and len(out) < 5000:
        value, path = todo.pop()
        out.append(path)
        if isinstance(value, dict | list) and len(path) < 60:
            if id(value) in seen:
                continue
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            todo.extend((v, path + (k,)) for k, v in items)
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def _mutate_doc(rng: random.Random, doc: Any) -> Any:
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return rng.choice(NASTY_VALUES)
    path = rng.choice(paths)
    parent = _get(doc, path[:-1])
    key = path[-1]
    op = rng.random()
    if op < 0.45:
        parent[key] = rng.choice(NASTY_VALUES)
    elif op < 0.55:
        del parent[key]
    elif op < 0.65 and isinstance(parent, dict):
        new_key = rng.choice(
            [str(key)[:-1] or "x", str(key) + "s", str(key).lower(), "unknownField", 1, None, True, 1.5, ""]
        )
        parent[new_key] = parent.pop(key)
    elif op < 0.75:
        parent[key] = [parent[key]] if not isinstance(parent[key], list) else {"item": parent[key]}
    elif op < 0.85 and isinstance(parent, list):
        parent.insert(key, parent[key])
    elif op < 0.92:
        # a sibling's value moved here (a well-formed value of the wrong field)
        siblings = [p for p in paths if p != path]
        if siblings:
            parent[key] = copy.deepcopy(_get(doc, rng.choice(siblings)))
    else:
        value = parent[key]
        if isinstance(value, int) and not isinstance(value, bool):
            parent[key] = rng.choice([value * 1000, -value, value + 1, 2**32 + value, 0])
        elif isinstance(value, str):
            parent[key] = rng.choice([value * 50, value.upper(), value + "*", value[:1], value + "\n", ""])
    return doc


def structural(rng: random.Random, text: str) -> str:
    try:
        docs = [d for d in yaml.safe_load_all(text)]
    except Exception:  # noqa: BLE001 - PyYAML raises more than YAMLError on bad input
        return text
    if not docs:
        return text
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        i = rng.randrange(len(docs))
        docs[i] = _mutate_doc(rng, docs[i])
    try:
        return yaml.safe_dump_all(docs, sort_keys=False, width=1000)
    except (yaml.YAMLError, ValueError, RecursionError, TypeError):
        return text


# ---------------------------------------------------------------------------- whole inputs


def alias_bomb(levels: int = 9) -> str:
    lines = ["apiVersion: v1", "kind: Namespace", "metadata:", "  name: bomb", "  labels:", "    a0: &a0 [x, x, x, x]"]
    for i in range(1, levels):
        prev = f"*a{i - 1}"
        lines.append(f"    a{i}: &a{i} [{', '.join([prev] * 9)}]")
    return "\n".join(lines) + "\n"


def many_unknown_keys(n: int = 5000) -> str:
    keys = "\n".join(f"  hostz{i}: x" for i in range(n))
    return f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\nspec:\n{keys}\n"


def deep_nesting(depth: int = 5000) -> str:
    return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: deep\n  labels: " + "[" * depth + "]" * depth + "\n"


def special_inputs() -> list[tuple[str, str]]:
    return [
        ("alias-bomb.yaml", alias_bomb()),
        ("unknown-keys.yaml", many_unknown_keys()),
        ("deep.yaml", deep_nesting()),
        ("deep-block.yaml", deep_block(900)),
        ("self-alias.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: &a [*a]\n"),
    ]


def deep_block(depth: int) -> str:
    body = "".join("  " * (i + 2) + f"k{i}:\n" for i in range(depth))
    return (
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: deep\nspec:\n"
        "  configPatches:\n  - applyTo: CLUSTER\n    patch:\n      operation: MERGE\n      value:\n" + body
    )


# ---------------------------------------------------------------------------- fields set to their edges

BIG_DURATIONS = ["2562048h", "315576000001s", "99999999999s", "0.0000000001s", "1ns", "0s", "-1s"]
REGEXES = [
    "(a)\\1",
    "(?=x)",
    "(?<!x)a",
    "a{1001}",
    "",
    "\\Z",
    "[z-a]",
    "x{2,1}",
    ".*",
    "(a{999}){999}",
    "a" * 40000,
    "(?i)ok",
    "^/api/v[0-9]+/.*$",
]
HEADER_NAMES = ["", "bad header", "x-a\n", ":authority", "host", "x-" + "a" * 17000, "X-Upper", "x-ok", "é"]
HEADER_VALUES = ["", "v\n", "v\r\nx: y", "v\x00", "a" * 17000, "ok"]
BIG_INTS = [0, -1, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1, 10000000, 8388609, 65537, 4]
CIDRS = ["x", "1.2.3.4/-1", "1.2.3.4/33", "1.2.3.4/24", "::/129", "", "10.0.0.0/8", "1.2.3.4"]
PORTS = ["abc", "65536", "0", "-1", "80", "15001", ""]
RESERVED_PORTS = [15000, 15001, 15006, 15020, 15021, 15090, 15004, 15008, 15009, 15010, 80, 0, 65536]

# (kind, path, values): a path of keys, "*" for a random existing list item, created where missing
FIELD_EDGES: list[tuple[str, tuple[Any, ...], list[Any]]] = [
    ("VirtualService", ("spec", "http", "*", "timeout"), BIG_DURATIONS),
    (
        "VirtualService",
        ("spec", "http", "*", "retries"),
        [{"attempts": n, "perTryTimeout": d} for n in (2**32, 2**31, -1, 3) for d in ("2562048h", "1s")],
    ),
    ("VirtualService", ("spec", "http", "*", "retries", "retryOn"), ["5xx,,gateway-error", "x\n", "5xx"]),
    (
        "VirtualService",
        ("spec", "http", "*", "match"),
        [[{"uri": {"regex": r}}] for r in REGEXES]
        + [[{"headers": {h: {"exact": "x"}}}] for h in HEADER_NAMES]
        + [[{"headers": {"x-a": {"regex": r}}}] for r in REGEXES[:6]]
        + [[{"queryParams": {"q": {"regex": r}}}] for r in REGEXES[:4]]
        + [[{"authority": {"prefix": ""}}], [{"uri": {"exact": ""}}], [{"method": {"regex": "(?=G)"}}]],
    ),
    (
        "VirtualService",
        ("spec", "http", "*", "headers"),
        [{"request": {"set": {h: "v"}}} for h in HEADER_NAMES]
        + [{"response": {"add": {"x-a": v}}} for v in HEADER_VALUES]
        + [{"request": {"remove": [h]}} for h in HEADER_NAMES],
    ),
    (
        "VirtualService",
        ("spec", "http", "*", "fault"),
        [{"delay": {"fixedDelay": d, "percentage": {"value": p}}} for d in ("2562048h", "1ms") for p in (1e-10, 100)]
        + [{"abort": {"httpStatus": s, "percentage": {"value": 50}}} for s in (200, 599, 0)]
        + [{"abort": {"grpcStatus": g}} for g in ("UNAVAILABLE", "NOPE", "")],
    ),
    (
        "VirtualService",
        ("spec", "http", "*", "corsPolicy"),
        [{"allowOrigins": [{"regex": r}], "maxAge": d} for r in REGEXES[:5] for d in ("2562048h", "24h")]
        + [{"allowHeaders": [h]} for h in HEADER_NAMES]
        + [{"allowMethods": ["", "GET\n"]}],
    ),
    (
        "VirtualService",
        ("spec", "http", "*", "rewrite"),
        [{"uriRegexRewrite": {"match": r, "rewrite": "/\\1"}} for r in REGEXES[:6]]
        + [{"uri": ""}, {"authority": "a\nb"}],
    ),
    ("VirtualService", ("spec", "http", "*", "mirrorPercentage"), [{"value": v} for v in (1e-10, 100, 50.5)]),
    (
        "VirtualService",
        ("spec", "http", "*", "directResponse"),
        [{"status": s, "body": {"string": b}} for s in (200, 599) for b in ("", "x" * 5000)],
    ),
    (
        "VirtualService",
        ("spec", "http", "*", "redirect"),
        [{"uri": u, "redirectCode": 301} for u in ("", "/a\n", "/x")]
        + [{"authority": "a b", "port": 65535}, {"scheme": "ftp\n"}],
    ),
    ("VirtualService", ("spec", "tls", "*", "match", "*", "sniHosts"), [["*"], [""], ["*.*"], ["a..b"]]),
    (
        "VirtualService",
        ("spec", "tcp", "*", "match"),
        [[{"destinationSubnets": [c]}] for c in CIDRS] + [[{"port": p}] for p in RESERVED_PORTS],
    ),
    ("VirtualService", ("spec", "http", "*", "route", "*", "destination", "port", "number"), RESERVED_PORTS),
    (
        "VirtualService",
        ("spec", "http", "*", "route", "*", "headers"),
        [{"request": {"set": {h: "v"}}} for h in HEADER_NAMES],
    ),
    (
        "DestinationRule",
        ("spec", "trafficPolicy", "loadBalancer"),
        [{"consistentHash": {"httpHeaderName": "x", "ringHash": {"minimumRingSize": n}}} for n in BIG_INTS]
        + [
            {"consistentHash": {"httpHeaderName": h, "maglev": {"tableSize": n}}}
            for h in ("x", "")
            for n in (4, 65537, 5000011, 65536, 2**32)
        ]
        + [{"consistentHash": {"minimumRingSize": n, "useSourceIp": True}} for n in (2**64 - 1, 8388609)]
        + [{"consistentHash": {"httpCookie": {"name": "c", "ttl": d, "path": "/\n"}}} for d in BIG_DURATIONS[:3]]
        + [{"warmupDurationSecs": d} for d in BIG_DURATIONS[:3]]
        + [{"simple": "LEAST_REQUEST"}],
    ),
    (
        "DestinationRule",
        ("spec", "trafficPolicy", "connectionPool"),
        [{"tcp": {"maxConnections": n, "connectTimeout": d}} for n in BIG_INTS[:9] for d in ("2562048h", "1s")]
        + [
            {"tcp": {"tcpKeepalive": {"time": d, "interval": d, "probes": n}}}
            for d in BIG_DURATIONS[:3]
            for n in (2**32, 1)
        ]
        + [
            {"http": {k: n}}
            for k in (
                "http1MaxPendingRequests",
                "http2MaxRequests",
                "maxRequestsPerConnection",
                "maxRetries",
                "maxConcurrentStreams",
            )
            for n in BIG_INTS[:9]
        ]
        + [{"http": {"idleTimeout": d}} for d in BIG_DURATIONS],
    ),
    (
        "DestinationRule",
        ("spec", "trafficPolicy", "outlierDetection"),
        [
            {k: n}
            for k in ("consecutive5xxErrors", "consecutiveGatewayErrors", "maxEjectionPercent", "minHealthPercent")
            for n in BIG_INTS[:9]
        ]
        + [{"interval": d, "baseEjectionTime": d} for d in BIG_DURATIONS],
    ),
    (
        "DestinationRule",
        ("spec", "trafficPolicy", "tls"),
        [{"mode": "SIMPLE", "caCertificates": f} for f in ("/no/such/ca.pem", "", "relative.pem")]
        + [{"mode": "MUTUAL", "clientCertificate": "/no/cert", "privateKey": "/no/key"}]
        + [{"mode": "SIMPLE", "sni": s, "subjectAltNames": [s]} for s in ("", "a\nb", "*")],
    ),
    (
        "DestinationRule",
        ("spec", "subsets", "*", "trafficPolicy", "connectionPool"),
        [{"http": {"http2MaxRequests": n}} for n in BIG_INTS],
    ),
    ("Gateway", ("spec", "servers", "*", "port", "number"), RESERVED_PORTS),
    ("Gateway", ("spec", "servers", "*", "hosts"), [["*"], ["*/*"], [""], ["./a..b"], ["a/b/c"]]),
    (
        "Gateway",
        ("spec", "servers", "*", "tls"),
        [
            {"mode": "SIMPLE", "credentialName": "c", "cipherSuites": [c]}
            for c in ("FOO", "ECDHE-RSA-AES128-GCM-SHA256", "")
        ]
        + [{"mode": "SIMPLE", "credentialName": "c", "minProtocolVersion": "TLSV1_3", "maxProtocolVersion": "TLSV1_0"}]
        + [{"mode": "PASSTHROUGH"}, {"mode": "SIMPLE", "serverCertificate": "/no/cert", "privateKey": "/no/key"}]
        + [{"mode": "MUTUAL", "credentialName": "c", "subjectAltNames": [""]}],
    ),
    (
        "Gateway",
        ("spec", "servers"),
        [
            [
                {
                    "port": {"number": 443, "name": f"tls{i}", "protocol": "TLS"},
                    "hosts": ["a.example.com"],
                    "tls": {"mode": "PASSTHROUGH"},
                }
                for i in range(2)
            ],
            [
                {
                    "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                    "hosts": ["*"],
                    "tls": {"mode": "PASSTHROUGH"},
                }
            ],
        ],
    ),
    ("Service", ("spec", "ports", "*", "port"), RESERVED_PORTS),
    ("Service", ("spec", "ports", "*", "targetPort"), RESERVED_PORTS),
    ("ServiceEntry", ("spec", "ports", "*", "number"), RESERVED_PORTS),
    ("ServiceEntry", ("spec", "addresses"), [[c] for c in CIDRS]),
    (
        "ServiceEntry",
        ("spec", "endpoints"),
        [[{"address": a, "ports": {"http": p}}] for a in ("1.2.3.4", "x y") for p in (0, 65536, 80)],
    ),
    (
        "Sidecar",
        ("spec", "ingress"),
        [
            [{"port": {"number": p, "protocol": "HTTP", "name": "h"}, "defaultEndpoint": "127.0.0.1:8080"}]
            for p in RESERVED_PORTS
        ],
    ),
    ("PeerAuthentication", ("spec", "portLevelMtls"), [{p: {"mode": "DISABLE"}} for p in (15001, 0, 65536, 8080)]),
    (
        "AuthorizationPolicy",
        ("spec", "rules"),
        [[{"from": [{"source": {"ipBlocks": [c]}}]}] for c in CIDRS]
        + [[{"from": [{"source": {"remoteIpBlocks": [c]}}]}] for c in CIDRS[:4]]
        + [[{"to": [{"operation": {"ports": [p]}}]}] for p in PORTS]
        + [[{"to": [{"operation": {"notPorts": [p]}}]}] for p in PORTS[:3]]
        + [[{"to": [{"operation": {"paths": [p], "methods": [m]}}]}] for p in ("", "/a*b", "*") for m in ("", "GET")]
        + [
            [{"when": [{"key": k, "values": [v]}]}]
            for k in (
                "remote.ip",
                "source.ip",
                "destination.port",
                "request.headers[x-a]",
                "request.headers[]",
                "destination.ip",
                "nonsense",
            )
            for v in CIDRS[:3] + PORTS[:2]
        ]
        + [[{"from": [{"source": {"principals": [""], "namespaces": ["*"]}}]}]],
    ),
    (
        "RequestAuthentication",
        ("spec", "jwtRules"),
        [
            [{"issuer": "i", "jwks": j}]
            for j in ('{"keys": 5}', "not json", "{}", '{"keys": []}', '{"keys": [{"kty": "RSA"}]}', "[]", "")
        ]
        + [[{"issuer": "i", "jwksUri": u}] for u in ("", "not a uri", "https://a b/")]
        + [[{"issuer": "i", "fromHeaders": [{"name": h}]}] for h in HEADER_NAMES[:4]]
        + [[{"issuer": "i", "outputPayloadToHeader": h}] for h in HEADER_NAMES[:4]]
        + [[{"issuer": "i", "outputClaimToHeaders": [{"header": h, "claim": "c"}]}] for h in HEADER_NAMES[:4]]
        + [[{"issuer": "", "audiences": [""]}]],
    ),
    (
        "Telemetry",
        ("spec", "tracing"),
        [[{"randomSamplingPercentage": v}] for v in (1e-10, 100, 0)]
        + [[{"customTags": {h: {"header": {"name": h}}}}] for h in HEADER_NAMES[:4]],
    ),
    (
        "Deployment",
        ("spec", "template", "spec", "containers", "*", "ports"),
        [[{"containerPort": p}] for p in RESERVED_PORTS],
    ),
]


def _set_path(rng: random.Random, node: Any, path: tuple[Any, ...], value: Any) -> bool:
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if part == "*":
            if not isinstance(node, list) or not node:
                return False
            idx = rng.randrange(len(node))
            if last:
                node[idx] = value
                return True
            node = node[idx]
            continue
        if not isinstance(node, dict):
            return False
        if last:
            node[part] = value
            return True
        if part not in node or node[part] is None:
            node[part] = [] if path[i + 1] == "*" else {}
        node = node[part]
    return False


def field_edges(rng: random.Random, text: str) -> str:
    """A field Envoy has rules for set to a value at or past its edge (the config stays otherwise valid)."""
    try:
        docs = list(yaml.safe_load_all(text))
    except Exception:  # noqa: BLE001
        return text
    targets = [
        (i, edge) for i, d in enumerate(docs) if isinstance(d, dict) for edge in FIELD_EDGES if edge[0] == d.get("kind")
    ]
    if not targets:
        return text
    i, (_kind, path, values) = rng.choice(targets)
    if not _set_path(rng, docs[i], path, copy.deepcopy(rng.choice(values))):
        return text
    try:
        return yaml.safe_dump_all(docs, sort_keys=False, width=1000)
    except Exception:  # noqa: BLE001
        return text


def mutate(rng: random.Random, text: str) -> str:
    """One to three mutations of any family (field edges most often: they keep the rest valid)."""
    for _ in range(rng.choice([1, 1, 2, 3])):
        r = rng.random()
        if r < 0.5:
            text = field_edges(rng, text)
        elif r < 0.75:
            text = structural(rng, text)
        else:
            text = rng.choice(TEXT_MUTATIONS)(rng, text)
    return text
