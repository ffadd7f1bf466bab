"""tshark as an oracle: field values of the first packet a display filter matches."""

from __future__ import annotations

import subprocess
from pathlib import Path


def tshark_fields(pcap: Path, display_filter: str, fields: list[str]) -> dict[str, str]:
    """{field: value} of the first matching packet (repeated values joined by commas); {} if none."""
    args = ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields",
            "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]  # fmt: skip
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return dict(zip(fields, lines[0].split("\t"), strict=True)) if lines else {}
