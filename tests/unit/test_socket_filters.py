"""The socket program's process filters, as user space asks them of running processes."""

from __future__ import annotations


def test_process_matcher_mirrors_the_socket_programs_process_filters(tmp_path):
    """--pid and --comm (all that are set must hold) asked of /proc by a process's main thread;
    no process filter: no matcher (OpenSSL is then probed per file, for every process)."""
    from hdrlog.capture.sockets import SocketFilters, process_matcher

    for pid, comm in ((10, b"nginx\n"), (11, b"curl\n"), (12, b"a-very-long-process-name\n")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_bytes(comm[:15].rstrip(b"\n") + b"\n")
    assert process_matcher(SocketFilters(ports=[80])) is None
    by_comm = process_matcher(SocketFilters(comms=["nginx", "a-very-long-process-name"]), proc=str(tmp_path))
    assert [by_comm(p) for p in (10, 11, 12, 13)] == [True, False, True, False]  # 13: gone
    both = process_matcher(SocketFilters(pids=[11, 10], comms=["nginx"]), proc=str(tmp_path))
    assert [both(p) for p in (10, 11)] == [True, False]
