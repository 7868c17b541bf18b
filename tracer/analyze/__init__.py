"""The pure analysis: Path + Observations + Evidence + window -> Report.

Theory of operation: every frame travels the path in one direction, requests from the guest
towards the wire, replies from the wire towards the guest. For each hop we know which direction a
frame must show there (a DISCOVER is received on the tap and sent out of the uplink), so a frame
"crossed" a hop when it was seen there with that direction. The first sniffed transit hop a frame
misses, after being seen at the hop before it, is where it stopped; the evidence (FDB, kernel log,
drop events, filter counters, port state) says why. Nothing here reads a clock or a socket: the
window end is given, so a replay decides exactly as the live run did.
"""

from tracer.analyze.verdict import analyze

__all__ = ["analyze"]
