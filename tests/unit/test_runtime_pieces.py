"""Unit tests for the runtime's pure parts: names, capture rules, IP allocation, the state record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gossamer.runtime.hosts import render_hosts, render_resolv
from gossamer.runtime.iptables import istio_rules
from gossamer.runtime.linux import proc_start_time, same_process_alive
from gossamer.runtime.network import IpAllocator, names_for
from gossamer.runtime.state import RuntimeAlreadyRunning, StateRecord, cleanup_leftovers, load_record
from gossamer.runtime.types import ServiceAddress


def test_hosts_file() -> None:
    text = render_hosts(
        pod_name="web-abc-12345",
        pod_ip="10.244.0.9",
        namespace="default",
        services=[ServiceAddress("reviews", "default", "10.96.0.20"), ServiceAddress("db", "other", "10.96.0.30")],
    )
    lines = text.splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.244.0.9\tweb-abc-12345" in lines
    assert "10.96.0.20\treviews.default.svc.cluster.local reviews.default.svc reviews.default reviews" in lines
    # The short name only for the pod's own namespace.
    assert "10.96.0.30\tdb.other.svc.cluster.local db.other.svc db.other" in lines


def test_resolv_conf() -> None:
    text = render_resolv("shop")
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local" in text
    assert "nameserver 127.0.0.1" in text


def test_istio_rules_match_istio_iptables() -> None:
    rules = istio_rules().splitlines()
    assert rules[0] == "*nat" and rules[-1] == "COMMIT"
    expected = [
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN",
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    ]
    assert [r for r in rules if r.startswith("-A")] == expected


def test_ip_allocator_sequential_then_reuse() -> None:
    alloc = IpAllocator(reserved=("10.244.0.1",))
    a, b, c = alloc.allocate(), alloc.allocate(), alloc.allocate()
    assert (a, b, c) == ("10.244.0.2", "10.244.0.3", "10.244.0.4")
    alloc.release(b)
    assert alloc.allocate() == "10.244.0.5"  # freed addresses are not reused right away


def test_ip_allocator_wraps_to_freed() -> None:
    import ipaddress

    alloc = IpAllocator(network=ipaddress.IPv4Network("10.244.0.0/29"), reserved=("10.244.0.1",))
    got = [alloc.allocate() for _ in range(5)]  # .2 .. .6
    assert got[-1] == "10.244.0.6"
    with pytest.raises(RuntimeError):
        alloc.allocate()
    alloc.release("10.244.0.3")
    assert alloc.allocate() == "10.244.0.3"


def test_names_fit_interface_limits() -> None:
    netns, veth = names_for("0123abcd")
    assert netns == "gsm-0123abcd"
    assert len(veth) <= 15


def test_proc_identity() -> None:
    start = proc_start_time(os.getpid())
    assert start is not None
    assert same_process_alive(os.getpid(), start)
    assert not same_process_alive(os.getpid(), start + 1)  # a reused PID would not match


def test_state_record_roundtrip(tmp_path: Path) -> None:
    rec = StateRecord(tmp_path)
    rec.claim()
    rec.add("netns", "gsm-x")
    rec.add("netns", "gsm-x")
    rec.add_process(123, 456, "a/b/c")
    data = load_record(tmp_path)
    assert data is not None
    assert data["netns"] == ["gsm-x"] and data["processes"][0]["pid"] == 123
    assert data["owner"]["pid"] == os.getpid()
    rec.remove_process(123)
    rec.remove("netns", "gsm-x")
    data = load_record(tmp_path)
    assert data is not None and data["netns"] == [] and data["processes"] == []


def test_cleanup_leftovers_kills_recorded_processes_and_dirs(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        leftover_dir = tmp_path / "run" / "abcd"
        leftover_dir.mkdir(parents=True)
        record = {
            "owner": {"pid": 999999999, "start": 1},  # dead owner
            "bridge": None,
            "processes": [{"pid": child.pid, "start": proc_start_time(child.pid), "what": "x"}],
            "netns": [],
            "veths": [],
            "etc_netns": [],
            "dirs": [str(leftover_dir)],
        }
        (tmp_path / "runtime.json").write_text(json.dumps(record))
        assert cleanup_leftovers(tmp_path) is True
        assert child.wait(timeout=5) == -9
        assert not leftover_dir.exists()
        assert not (tmp_path / "runtime.json").exists()
        assert cleanup_leftovers(tmp_path) is False
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_cleanup_leftovers_spares_reused_pid(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = proc_start_time(child.pid)
        assert start is not None
        record = {"owner": None, "processes": [{"pid": child.pid, "start": start - 1, "what": "x"}]}
        (tmp_path / "runtime.json").write_text(json.dumps(record))
        cleanup_leftovers(tmp_path)
        time.sleep(0.2)
        assert child.poll() is None  # different start time: not ours, not killed
    finally:
        child.kill()
        child.wait()


def test_cleanup_refuses_live_owner(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"owner": {"pid": child.pid, "start": proc_start_time(child.pid)}}
        (tmp_path / "runtime.json").write_text(json.dumps(record))
        with pytest.raises(RuntimeAlreadyRunning):
            cleanup_leftovers(tmp_path)
    finally:
        child.kill()
        child.wait()
