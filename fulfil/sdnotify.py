"""systemd's notify protocol, without a dependency: one datagram per message to $NOTIFY_SOCKET.

Outside systemd (no NOTIFY_SOCKET) every send is a no-op, so the daemon runs the same from a shell.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, address: str | None) -> None:
        # "@name" is the abstract namespace: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address and address.startswith("@") else address

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        return cls((os.environ if environ is None else environ).get("NOTIFY_SOCKET") or None)

    def send(self, *fields: str) -> bool:
        """Send `READY=1`, `WATCHDOG=1`, `STATUS=...`... in one datagram; False when not sent.

        A failed send is not fatal: if the loop stops pinging, systemd's watchdog is what notices.
        """
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(fields).encode())
        except OSError:
            return False
        return True
