"""Small builders shared by the per-feature modules."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from gossamer.ir.matches import StringMatch


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def socket_address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=ip, port_value=port))


def ads_config_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def string_matcher(m: StringMatch) -> string_pb2.StringMatcher:
    out = string_pb2.StringMatcher(ignore_case=m.ignore_case)
    if m.kind == "exact":
        out.exact = m.value
    elif m.kind == "prefix":
        out.prefix = m.value
    elif m.kind == "regex":
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=m.value))
    return out
