"""Input that once crashed or stalled the control plane (found by fuzzing, issue 11): each class gets a
`file:line: Kind/name: field: message` error and nothing is accepted."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import textwrap
from pathlib import Path

import pytest

from gossamer.controlplane.watch import ManifestWatcher
from gossamer.resources.issues import Issue
from gossamer.resources.loader import parse_documents
from tests.fuzz import mutate

NS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"


def _errors(text: str) -> list[Issue]:
    resources, issues = parse_documents(text, "in.yaml")
    errors = [i for i in issues if i.level == "error"]
    assert not resources and errors, f"accepted: {text[:200]!r}"
    return errors


def _vs(body: str) -> str:
    return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n" + textwrap.indent(
        textwrap.dedent(body), "  "
    )


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (NS + '  labels: {a: "b\x00"}\n', 5, "U+0000 at column"),
        (NS + "  labels: {a: b\x07}\n", 5, "U+0007"),
        (NS + "  labels: {a: \ud800}\n", 5, "U+D800"),
        (NS + "  labels: &a [*a]\n", 5, "recursive alias"),
        (NS + "  labels: &a {b: *a}\n", 5, "recursive alias"),
        (NS + "  labels: {a: " + "9" * 5000 + "}\n", 5, "out of range"),
        (NS + "  labels: {a: !!binary aGVsbG8=}\n", 5, "unsupported YAML tag !!binary"),
        (NS + "  labels: {a: !!set {b}}\n", 5, "unsupported YAML tag !!set"),
        (NS + "  labels: {a: !custom b}\n", 5, "unsupported YAML tag '!custom'"),
        (NS + "  labels: {a: !!bool maybe}\n", 5, "is not a boolean"),
        (NS + "  labels: {a: !!int 0x}\n", 5, "is not an integer"),
        (NS + "  labels: {a: .nan}\n", 5, "only finite numbers"),
        (NS + "  labels:\n    ? [a]\n    : b\n", 6, "must be a string or a number"),
        ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: !!binary YQ==\n", 4, "!!binary"),
        (NS + "  labels: " + "[" * 2000 + "]" * 2000 + "\n", 5, "nesting depth"),
        (mutate.deep_block(150), 108, "nesting is deeper than 100 levels"),
    ],
)
def test_yaml_crash_classes_are_errors_with_a_line(text: str, line: int, fragment: str) -> None:
    errors = _errors(text)
    assert errors[0].line == line, errors
    assert fragment in errors[0].message, errors


def test_alias_bomb_is_bounded_as_kubernetes_bounds_it() -> None:
    errors = _errors(mutate.alias_bomb(9))  # 550 bytes that would expand to 248 million nodes
    assert "excessive aliasing" in errors[0].message
    # a few aliases, as people use them, still work
    ok = NS + "  labels: &l {app: x}\n  annotations: *l\n"
    resources, issues = parse_documents(ok, "in.yaml")
    assert [r.metadata.annotations for r in resources] == [{"app": "x"}], issues


def test_merge_keys_and_non_string_keys_read_as_kubernetes_reads_them() -> None:
    text = NS + "  labels:\n    <<: {app: x, v: '1'}\n    v: '2'\n  annotations: {true: 'y', null: n, 1.5: f}\n"
    resources, issues = parse_documents(text, "in.yaml")
    assert not [i for i in issues if i.level == "error"], issues
    meta = resources[0].metadata
    assert meta.labels == {"app": "x", "v": "2"}
    assert meta.annotations == {"true": "y", "null": "n", "1.5": "f"}
    # YAML 1.1 reads `yes` as a boolean: annotations are strings, so it is an error like in Kubernetes
    bad = NS + "  annotations: {true: yes}\n"
    assert "annotations.true" in str(_errors(bad)[0])


def test_unknown_top_level_null_key_is_named_with_its_line() -> None:
    errors = _errors(NS + "null: 1\n")
    assert (errors[0].line, errors[0].field, errors[0].message) == (5, "null", "unknown field 'null'")


def test_suggestions_are_never_the_same_word_and_come_from_the_same_object() -> None:
    # `hosts` is a field of VirtualService, not of a route destination
    errors = _errors(
        _vs("""
        hosts: [r]
        http:
        - route:
          - destination: {host: r, hosts: x}
    """)
    )
    assert "unknown field 'hosts'" in errors[0].message
    assert "did you mean 'hosts'" not in errors[0].message
    errors = _errors(_vs("hosts: [r]\nhttp:\n- route:\n  - destination: {hots: r}\n"))
    assert "unknown field 'hots' (did you mean 'host'?)" in [e.message for e in errors]
    assert "did you mean 'metadata'" in _errors(NS + "metadta: {}\n")[0].message


def test_thousands_of_unknown_keys_are_each_reported() -> None:
    # (how fast: benchmarks/validation.py)
    errors = _errors(mutate.many_unknown_keys(5000))
    assert len(errors) == 5000 and errors[0].line == 6


@pytest.mark.parametrize(
    "text",
    [
        NS + "  labels: {a: " + "x" * 5_000_000 + "}\n",
        "apiVersion: v1\nkind: " + "K" * 100_000 + "\nmetadata: {name: a}\n",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: " + "a" * 100_000 + "}\n",
        NS + "  labels: {" + "k" * 100_000 + ": v}\n",
    ],
)
def test_messages_quote_only_a_short_prefix_of_a_value(text: str) -> None:
    for e in _errors(text):
        assert len(str(e)) < 800, str(e)[:300]


def test_telemetry_entries_are_checked_against_istios_schema() -> None:
    text = (
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec:\n"
        "  metrics: [{overrides: 5}]\n  accessLogging: [{disabled: maybe}]\n"
    )
    errors = _errors(text)
    assert [(e.line, e.field) for e in errors] == [
        (5, "spec.metrics[0].overrides"),
        (6, "spec.accessLogging[0].disabled"),
    ]


def test_envoyfilter_type_urls_never_import_modules_named_by_config() -> None:
    before = set(sys.modules)
    text = (
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: e}\nspec:\n"
        "  configPatches:\n  - applyTo: HTTP_FILTER\n    patch:\n      operation: INSERT_FIRST\n"
        "      value:\n        name: x\n        typed_config: {'@type': type.googleapis.com/this.X}\n"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        errors = _errors(text)
    assert out.getvalue() == ""  # `import this` prints the Zen of Python
    assert "this" not in set(sys.modules) - before
    assert "Can not find message descriptor" in errors[0].message


def test_probe_timings_are_kubernetes_int32() -> None:
    text = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec:
          selector: {matchLabels: {app: d}}
          template:
            metadata: {labels: {app: d}}
            spec:
              containers:
              - name: c
                ports: [{containerPort: 80}]
                readinessProbe: {tcpSocket: {port: 80}, initialDelaySeconds: 9999999999}
        """)
    errors = _errors(text)
    assert (errors[0].line, errors[0].field) == (
        12,
        "spec.template.spec.containers[0].readinessProbe.initialDelaySeconds",
    )


def test_a_one_megabyte_manifest_validates() -> None:
    """(how fast: benchmarks/validation.py)"""
    base = (Path(__file__).parents[2] / "samples" / "bookinfo" / "bookinfo.yaml").read_text()
    docs: list[str] = []
    n = 0
    while sum(map(len, docs)) < 1_000_000:
        docs.append(base.replace("name: ", f"name: c{n}-").replace("app: ", f"app: c{n}-"))
        n += 1
    resources, issues = parse_documents("\n---\n".join(docs), "big.yaml")
    assert not [i for i in issues if i.level == "error"]
    assert len(resources) > 1000


def test_the_manifest_watcher_survives_any_edit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    applied: list[str] = []

    def on_edit(path: Path, text: str) -> None:
        if "boom" in text:
            raise RuntimeError("a bug while applying")
        applied.append(text)

    f = tmp_path / "a.yaml"
    f.write_text("one")
    watcher = ManifestWatcher(on_edit)
    watcher.watch([tmp_path])
    caplog.set_level(logging.ERROR)
    for content in (b"\xff\xfe not utf-8", b"boom", b"two!"):
        f.write_bytes(content)
        watcher.poll()
    f.unlink()
    watcher.poll()
    (tmp_path / "b.yaml").mkdir()
    watcher.poll()
    # the undecodable bytes reach validation (which reports them with their line), the bug is logged
    assert applied == ["\udcff\udcfe not utf-8", "two!"]
    assert "re-applying the edited file failed" in caplog.text


def test_bytes_that_are_not_utf8_are_an_error_with_their_line(tmp_path: Path) -> None:
    from gossamer.controlplane.watch import read_manifest

    f = tmp_path / "a.yaml"
    f.write_bytes(NS.encode() + b"  labels: {a: caf\xe9}\n")  # Latin-1, not UTF-8
    errors = _errors(read_manifest(f))
    assert (errors[0].line, errors[0].message) == (
        5,
        "invalid YAML: byte 0xE9 at column 18 is not UTF-8 (YAML files are UTF-8)",
    )
