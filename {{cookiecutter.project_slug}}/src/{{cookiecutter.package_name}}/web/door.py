"""The listener's door: new SYNs are dropped (Linux BPF) while the accept queue is served, never reset."""

from __future__ import annotations

import ctypes
import socket
import struct
import sys
from collections.abc import Iterable

# <linux/filter.h>, <asm-generic/socket.h>: the constants Python's socket module leaves out.
SO_ATTACH_FILTER = 26
BPF_LD_B_ABS = 0x30
BPF_JMP_JSET_K = 0x45
BPF_RET_K = 0x06
TCP_SYN = 0x02
# A TCP socket's filter sees the segment from its TCP header on; byte 13 holds the flags.
TCP_FLAGS_OFFSET = 13
KEEP_WHOLE_PACKET = 0xFFFFFFFF
# ACKs that complete handshakes begun before the door shut pass: only SYNs are dropped.
DROP_SYNS = (
    (BPF_LD_B_ABS, 0, 0, TCP_FLAGS_OFFSET),
    (BPF_JMP_JSET_K, 0, 1, TCP_SYN),
    (BPF_RET_K, 0, 0, 0),
    (BPF_RET_K, 0, 0, KEEP_WHOLE_PACKET),
)
# struct tcp_info's `unacked`: a listening socket's accept queue length.
TCP_INFO_QUEUED_OFFSET = 8 + 4 * 4


def supported() -> bool:
    return sys.platform == "linux"


def shut(listeners: Iterable[socket.socket]) -> None:
    """Drop new SYNs on each listener (shared with every process that holds it); idempotent."""
    program = b"".join(struct.pack("HBBI", *instruction) for instruction in DROP_SYNS)
    # The kernel copies the program during setsockopt: the buffer only has to outlive the call.
    instructions = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HP", len(DROP_SYNS), ctypes.addressof(instructions))
    for listener in listeners:
        with _duplicate(listener) as sock:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def queued(listeners: Iterable[socket.socket]) -> int:
    """Connections the kernel accepted that no process has taken with accept() yet."""
    total = 0
    for listener in listeners:
        with _duplicate(listener) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_QUEUED_OFFSET + 4)
        (count,) = struct.unpack_from("I", info, TCP_INFO_QUEUED_OFFSET)
        total += count
    return total


def _duplicate(listener: socket.socket) -> socket.socket:
    # asyncio's and uvloop's server sockets are wrappers that refuse some calls; a duplicate is a plain one.
    return socket.fromfd(listener.fileno(), listener.family, socket.SOCK_STREAM)
