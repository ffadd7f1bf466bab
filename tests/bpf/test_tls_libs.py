"""Finding and probing OpenSSL: the system library is probed once, a file without the
symbols is skipped with a reason, a missing --ssl-lib path is reported."""

from __future__ import annotations

import os

import pytest

from hdrlog.capture.sockets import SocketCapture
from hdrlog.capture.tls_libs import TlsProbes, _links_openssl_statically, find_system_libraries
from tests.conftest import require_bpf


@pytest.fixture(scope="module")
def cap():
    require_bpf()
    c = SocketCapture.load(ring_size=1 << 16)
    yield c
    c.close()


def test_system_libssl_is_probed_once(cap):
    """Every libssl file of the system is attached once, however many processes map it."""
    probes = TlsProbes(cap.obj)
    try:
        probes.scan_all()
        libs = {os.path.realpath(p) for p in find_system_libraries()}
        assert libs, "Debian's libssl3 is installed by the setup"
        probed = {os.path.realpath(lib.path) for lib in probes.libraries.values()}
        assert libs <= probed
        for lib in probes.libraries.values():
            assert {"SSL_read", "SSL_write", "SSL_set_fd", "SSL_free"} <= set(lib.symbols)
        again = probes.scan_all()
        assert again == 0
    finally:
        probes.close()
    assert all(not lib.links for lib in probes.libraries.values())


def test_a_file_without_openssl_is_skipped_with_a_reason(cap):
    """--ssl-lib pointing at a binary without SSL_read/SSL_write is not probed, and says why."""
    probes = TlsProbes(cap.obj, extra_paths=["/bin/true", "/nonexistent/libssl.so.3"])
    try:
        probes.scan_all()
        reasons = list(probes.skipped.values())
        assert any("/bin/true" in r and "SSL_read" in r for r in reasons), reasons
        assert probes.skipped["/nonexistent/libssl.so.3"] == "no such file"
        assert all(os.path.realpath(lib.path) != os.path.realpath("/bin/true") for lib in probes.libraries.values())
    finally:
        probes.close()


def test_static_openssl_detection(tmp_path):
    """An ELF file whose symbol names include SSL_read and SSL_write is a candidate; others are not."""
    elf = tmp_path / "fake"
    elf.write_bytes(b"\x7fELF" + b"\0" * 60 + b"\0SSL_read\0\0SSL_write\0")
    plain = tmp_path / "plain"
    plain.write_bytes(b"\x7fELF" + b"\0" * 100)
    text = tmp_path / "text"
    text.write_bytes(b"\0SSL_read\0\0SSL_write\0")
    assert _links_openssl_statically(str(elf))
    assert not _links_openssl_statically(str(plain))
    assert not _links_openssl_statically(str(text))
