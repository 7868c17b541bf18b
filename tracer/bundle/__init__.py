"""Bundles: what a trace saw, recorded so that it replays offline to the same verdict.

Theory of operation: a bundle is a directory with the path (topology.json), one pcapng with an
interface description block per hop (name, role and position, nanosecond timestamps) and the
direction flag on every packet, the evidence as JSON lines, and a manifest (tool version, target,
protocol, window, capture counters). Replay feeds the same analysis the live run used, with the
recorded window, so the verdict is the same by construction.
"""
