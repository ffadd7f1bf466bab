"""hdrlog: log the header elements of a Linux host's network traffic with eBPF."""

__version__ = "0.1.0"
