"""One JSON object per line, to stdout or to a file created 0600."""

from __future__ import annotations

import os
import sys
from typing import Iterable

import msgspec

from hdrlog.records import json_form

__all__ = ["NdjsonSink"]


class NdjsonSink:
    def __init__(self, target: str = "-"):
        self.target = target
        self.records = 0
        self._enc = msgspec.json.Encoder()
        self._buf = bytearray()
        if target == "-":
            self._fd = sys.stdout.fileno()
            self._own = False
        else:
            # records may hold addresses and payload bytes: readable by the owner only
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._own = True

    def write_many(self, records: Iterable[msgspec.Struct | bytes]) -> None:
        """Records, or lines already encoded (packet records arrive so)."""
        buf, enc = self._buf, self._enc
        n = 0
        for rec in records:
            if rec.__class__ is bytes:
                buf += rec
            else:
                enc.encode_into(json_form(rec), buf, -1)
            buf += b"\n"
            n += 1
        self.records += n
        self.flush()

    def flush(self) -> None:
        try:
            with memoryview(self._buf) as view:
                written = 0
                while written < len(view):
                    written += os.write(self._fd, view[written:])
        finally:
            # also after a broken pipe (`hdrlog run | head`): nothing more can be written
            self._buf.clear()

    def close(self) -> None:
        self.flush()
        if self._own:
            os.close(self._fd)
            self._own = False
