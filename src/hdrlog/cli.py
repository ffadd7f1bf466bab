"""`hdrlog run | doctor | version`: a thin layer over Config and Agent."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from hdrlog import __version__

__all__ = ["main"]

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def _split(values: list[str] | None) -> list[str] | None:
    """Repeatable flags also take comma lists: --port 80,443 --port 8080."""
    if values is None:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hdrlog",
        description="Log the header elements of this host's network traffic with eBPF.",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="log packet headers as NDJSON",
        description="Attach to interfaces and syscalls and write one JSON object per packet, "
        "HTTP exchange and TLS handshake (and per flow and interval with --flows). "
        "Flags override the config file. On exit a summary goes to stderr.",
    )
    a = run.add_argument
    a("-i", "--interface", action="append", metavar="IF",
      help="interface to watch (repeatable; default: every interface that is up)")
    a("--mode", choices=["tc", "xdp"], help="hook: tc (ingress and egress, default) or xdp (ingress)")
    a("--xdp-mode", choices=["auto", "native", "generic"], help="XDP attach mode (default auto)")
    a("--tc-attach", choices=["auto", "tcx", "legacy"],
      help="tcx links (Linux 6.6+) or a clsact qdisc with a cls_bpf filter (default auto)")
    a("--proto", action="append", metavar="P", help="keep these IP protocols: tcp, udp, icmp, icmpv6 or numbers")
    a("--port", action="append", metavar="N", help="keep packets with this source or destination port")
    a("--net", action="append", metavar="CIDR", help="keep packets with an address in this network")
    a("--not-net", action="append", metavar="CIDR", help="drop packets with an address in this network")
    a("--tcp-flags", metavar="SPEC",
      help="keep TCP packets by flags: 'syn,rst' (any set) or 'syn/syn,ack' (of SYN,ACK exactly SYN)")
    a("--sample", type=int, metavar="N", help="log 1 in N packets (SYN, FIN and RST always)")
    a("--first-packets", type=int, metavar="N", help="log only the first N packets of each flow")
    a("--snaplen", type=int, metavar="N", help="L4 payload bytes to log per packet (0-1024, default 0)")
    a("--ring-size", type=int, metavar="BYTES", help="ring buffer size, a power of two (default 8 MiB)")
    a("-c", "--config", metavar="FILE", help="YAML file with these settings (keys as the long flags)")
    a("-o", "--output", metavar="FILE", help="where records go: a file (created 0600, appended) or - for stdout")
    a("--duration", type=float, metavar="SECONDS", help="stop after this long")
    a("--count", type=int, metavar="N", help="stop after N records")
    fl = run.add_argument_group("flows (per-flow totals counted in the kernel)")
    f = fl.add_argument
    f("--flows", action="store_true", default=None,
      help="also write a flow record for each flow with traffic, every --flow-interval seconds and at exit")
    f("--flows-only", action="store_true", default=None,
      help="flow records only: no packet records (nothing goes through the ring) and no L7 capture")
    f("--flow-interval", type=float, metavar="SECONDS",
      help="how often the flow table is read and flow records written, 0.1-86400 (default 10)")
    f("--max-flows", type=int, metavar="N",
      help="flows the kernel tracks at once, 16-4194304 (default 65536); the least recently used go first; "
           "the table takes N x CPUs x 72 bytes of kernel memory, plus ~100 bytes per flow")
    l7 = run.add_argument_group("L7 (HTTP/1.x from socket syscalls)")
    b = l7.add_argument
    b("--no-l7", dest="l7", action="store_false", default=None, help="packets only: no socket syscall capture")
    b("--l7-only", action="store_true", default=None, help="HTTP records only: no packet capture")
    b("--pid", action="append", metavar="PID", help="capture only these processes (repeatable, commas)")
    b("--comm", action="append", metavar="NAME", help="capture only processes with this name (comm, at most 15 characters)")
    b("--cgroup", action="append", metavar="DIR",
      help="capture only processes in this cgroup v2 directory (path, relative to the cgroup2 mount, or id)")
    b("--headers", metavar="LIST",
      help="headers to log: 'all', or a comma list of names (default: Host, User-Agent, Content-Type, ... see README)")
    b("--capture-bytes", type=int, metavar="N",
      help="bytes copied per read/write syscall, 1-8192 (default 4096); longer messages are marked truncated")
    b("--unix-sockets", action="store_true", default=None, help="also capture Unix sockets")
    b("--tls", dest="tls", action="store_true", default=None,
      help="log HTTP inside TLS through uprobes on OpenSSL (default, where OpenSSL is found; with --pid, --comm or --cgroup only in the processes they want)")
    b("--no-tls", dest="tls", action="store_false", help="no uprobes on TLS libraries")
    b("--ssl-lib", action="append", metavar="PATH",
      help="another OpenSSL library or statically linked binary to probe (repeatable)")
    b("--no-redact", dest="redact", action="store_false", default=None,
      help="log secrets as they are (Authorization, cookies, API keys, secret query parameters)")
    b("--redact-mode", choices=["mask", "hash"],
      help="mask: replace secrets (default); hash: keyed hash, so equal secrets can be correlated "
           "(key from HDRLOG_REDACT_KEY or the config's redact_key; default a random key per run)")
    b("--redact-header", action="append", metavar="NAME", help="another header whose value is secret (repeatable)")
    b("--redact-param", action="append", metavar="NAME", help="another query parameter whose value is secret (repeatable)")

    sub.add_parser("doctor", help="check privileges, kernel features and the build",
                   description="One line per check; each failure says what to do.")
    sub.add_parser("version", help="print the version")
    return p


def _overrides(args: argparse.Namespace) -> dict:
    return {
        "interface": _split(args.interface),
        "mode": args.mode,
        "xdp_mode": args.xdp_mode,
        "tc_attach": args.tc_attach,
        "proto": _split(args.proto),
        "port": _split(args.port),
        "net": _split(args.net),
        "not_net": _split(args.not_net),
        "tcp_flags": args.tcp_flags,
        "sample": args.sample,
        "first_packets": args.first_packets,
        "snaplen": args.snaplen,
        "ring_size": args.ring_size,
        "output": args.output,
        "duration": args.duration,
        "count": args.count,
        "flows": args.flows,
        "flows_only": args.flows_only,
        "flow_interval": args.flow_interval,
        "max_flows": args.max_flows,
        "l7": args.l7,
        "l7_only": args.l7_only,
        "pid": _split(args.pid),
        "comm": _split(args.comm),
        "cgroup": _split(args.cgroup),
        "headers": args.headers,
        "capture_bytes": args.capture_bytes,
        "unix_sockets": args.unix_sockets,
        "tls": args.tls,
        "ssl_lib": args.ssl_lib,
        "redact": args.redact,
        "redact_mode": args.redact_mode,
        "redact_key": os.environ.get("HDRLOG_REDACT_KEY"),
        "redact_headers": _split(args.redact_header),
        "redact_params": _split(args.redact_param),
    }


def _err(msg: str) -> None:
    print(f"hdrlog: {msg}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from hdrlog import config
    from hdrlog.agent import Agent, print_summary
    from hdrlog.capture.packets import ObjectMissingError
    from hdrlog.interfaces import UnknownInterfaceError
    from hdrlog.privileges import missing_capabilities

    try:
        cfg = config.load(args.config, _overrides(args))
    except config.ConfigError as e:
        _err(str(e))
        return EXIT_USAGE
    missing = missing_capabilities()
    if missing:
        _err(f"needs root or the capabilities {', '.join(missing)} to load and attach eBPF programs")
        return EXIT_RUNTIME
    agent = Agent(cfg)
    try:
        summary = agent.run()
    except (UnknownInterfaceError, config.ConfigError) as e:
        _err(str(e))
        return EXIT_USAGE
    except ObjectMissingError as e:
        _err(str(e))
        return EXIT_RUNTIME
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        # BpfError, and files hdrlog could not open: one line; -v logs the rest
        _err(str(e))
        log = getattr(e, "log", None)
        if log:
            logging.getLogger("hdrlog").debug("verifier log:\n%s", log)
        return EXIT_RUNTIME
    print_summary(summary)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="hdrlog: %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "version":
        print(f"hdrlog {__version__}")
        return EXIT_OK
    if args.command == "doctor":
        from hdrlog.doctor import run_doctor

        return run_doctor()
    if args.command == "run":
        return _run(args)
    _parser().print_help(sys.stderr)
    return EXIT_USAGE
