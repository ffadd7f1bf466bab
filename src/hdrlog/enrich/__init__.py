"""Context the kernel event does not carry: the process's executable and command
line (from /proc) and its container (from the cgroup id).

ProcessEnricher and ContainerEnricher are pipeline processors: record in, record
out, a field the record already has is never overwritten.
"""

from __future__ import annotations

import msgspec

from hdrlog.enrich.container import ContainerResolver, cgroup2_mount, container_from_path
from hdrlog.enrich.process import ProcessCache, ProcessInfo
from hdrlog.records import HttpRecord, TlsRecord, Record

__all__ = [
    "ContainerEnricher",
    "ContainerResolver",
    "ProcessCache",
    "ProcessEnricher",
    "ProcessInfo",
    "cgroup2_mount",
    "container_from_path",
]


# the record types that carry process and container context
PROCESS_RECORDS = (HttpRecord, TlsRecord)


class ProcessEnricher:
    """Fills process.executable.path and process.command_line from the record's pid."""

    def __init__(self, cache: ProcessCache | None = None) -> None:
        self.cache = cache if cache is not None else ProcessCache()

    def __call__(self, record: Record) -> Record:
        if not isinstance(record, PROCESS_RECORDS) or record.pid is None:
            return record
        if record.executable_path is not None and record.command_line is not None:
            return record
        info = self.cache.lookup(record.pid)
        if info is None:
            return record
        changes = {}
        if record.executable_path is None and info.exe_path is not None:
            changes["executable_path"] = info.exe_path
        if record.command_line is None and info.command_line is not None:
            changes["command_line"] = info.command_line
        return msgspec.structs.replace(record, **changes) if changes else record


class ContainerEnricher:
    """Fills container.id and container.runtime from the record's cgroup id."""

    def __init__(self, resolver: ContainerResolver | None = None) -> None:
        self.resolver = resolver if resolver is not None else ContainerResolver()

    def __call__(self, record: Record) -> Record:
        if not isinstance(record, PROCESS_RECORDS) or record.cgroup_id is None:
            return record
        if record.container_id is not None:
            return record
        found = self.resolver.resolve(record.cgroup_id)
        if found is None:
            return record
        return msgspec.structs.replace(record, container_id=found[0], container_runtime=found[1])
