"""Shared test plumbing: the BPF requirement gate and throwaway network namespaces.

Tests that need root and a kernel with eBPF use the `bpf_required` fixture (or
the `needs_bpf` mark): they skip with a reason on machines that lack it, and
fail instead when HDRLOG_REQUIRE_BPF=1 (CI)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.netns import NetnsPair, cleanup_stale_namespaces

REQUIRE = os.environ.get("HDRLOG_REQUIRE_BPF") == "1"


def _bpf_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "needs kernel BTF"
    try:
        from hdrlog.capture.packets import PacketCapture, object_path

        object_path(PacketCapture.OBJECT)
    except Exception as e:  # noqa: BLE001 - any reason is a reason to skip
        return f"BPF objects unavailable: {e}"
    return None


_REASON = _bpf_unavailable()


def require_bpf() -> None:
    if _REASON:
        if REQUIRE:
            pytest.fail(f"HDRLOG_REQUIRE_BPF=1 but {_REASON}")
        pytest.skip(_REASON)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        if REQUIRE:
            pytest.fail(f"HDRLOG_REQUIRE_BPF=1 but {name} is not installed")
        pytest.skip(f"needs {name}")
    return path


@pytest.fixture
def bpf_required() -> None:
    require_bpf()


@pytest.fixture
def netns_pair(bpf_required):
    """Two namespaces joined by a veth pair, removed afterwards whatever happens."""
    pair = NetnsPair.create()
    try:
        yield pair
    finally:
        pair.destroy()


def pytest_sessionstart(session) -> None:
    if os.geteuid() == 0:
        cleanup_stale_namespaces()


def pytest_sessionfinish(session, exitstatus) -> None:
    if os.geteuid() == 0:
        cleanup_stale_namespaces()
