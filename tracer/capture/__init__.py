"""Capture: one AF_PACKET socket per hop with a kernel BPF filter, and the DHCP/ARP dissector.

Theory of operation: the kernel filter keeps everything but DHCPv4 and ARP out of userspace, so a
busy bridge costs us nothing; sockets are opened (inside each hop's namespace) before anything is
sent; each frame keeps the kernel's timestamp and packet type (received vs outgoing), which is all
the analysis needs to follow a frame along the path. Nothing here sets promiscuous mode: bridge
ports already are, and a socket bound to an interface sees that interface's own traffic.

    bpf.py      the classic BPF programs (as tcpdump -dd compiles them) and SO_ATTACH_FILTER
    netns.py    run a function or open a socket inside a network namespace, on a helper thread
    live.py     Sniffer: the per-hop sockets, poll(), drop counters, vanished hops
    dissect.py  RawFrame -> Observation: the ~1 µs struct pre-check, a struct reader for well-formed
                frames (~10 µs), scapy for the rest
    libpcap.py  capture files read by libpcap with the same filter in C (replay --hop)
    probe.py    --probe: one DISCOVER or ARP request from the guest's own interface

Importing this package imports no scapy; dissect() loads three of its layers when it first needs
them, libpcap.py only scapy's ctypes bindings of libpcap.
"""
