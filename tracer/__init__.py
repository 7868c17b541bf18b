"""tracepath-l2: find which virtual cable between a guest and the wire eats its DHCP or ARP frames.

Theory of operation: resolve the guest's L2 path from what the host already knows (libvirt, LXC,
LXD, the kernel over netlink), sniff every hop of it at once, and let a pure analysis decide where
the frames stop and why. See DESIGN.md in the shared folder for the flow.
"""

__version__ = "0.1.0"
