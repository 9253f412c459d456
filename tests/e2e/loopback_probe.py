"""A pod with raw sockets (root in its netns: `runAsUser: 0`, or a compromised gateway) knocks on the
host's loopback through the bridge: a hand-made TCP SYN to DST_IP:PORT, from the pod's address, out of
eth0 to the bridge's MAC address. Prints "answered" if the host sent a SYN-ACK back, else "silent".

    python3 loopback_probe.py BRIDGE_MAC POD_IP DST_IP PORT

Only the standard library (it runs in the pod's netns as root, where the test puts it).
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
SYN, ACK = 0x02, 0x10


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_frame(src_mac: bytes, dst_mac: bytes, src: str, dst: str, sport: int, dport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, SYN, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, socket.IPPROTO_TCP, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + tcp


def main() -> None:
    bridge_mac, pod_ip, dst_ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.bind(("eth0", 0))
    src_mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
    sport = 40000 + os.getpid() % 20000
    sock.send(syn_frame(src_mac, bytes.fromhex(bridge_mac.replace(":", "")), pod_ip, dst_ip, sport, port))
    deadline = time.monotonic() + 2
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        frame = sock.recv(65535)
        ip = frame[14:]
        if len(ip) < 40 or ip[9] != socket.IPPROTO_TCP:
            continue
        tcp = ip[(ip[0] & 0x0F) * 4 :]
        got_sport, got_dport = struct.unpack("!HH", tcp[:4])
        if got_sport == port and got_dport == sport and tcp[13] & (SYN | ACK) == SYN | ACK:
            print("answered")
            return
    print("silent")


if __name__ == "__main__":
    main()
