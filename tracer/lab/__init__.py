"""Labs: real outages from the seeds, rebuilt in network namespaces with real kernel objects.

Theory of operation: a lab is a base topology (guest -- bridge -- uplink veth -- upstream namespace
running dnsmasq) plus one fault. Every object a lab creates is recorded in its state file under
/run/tracepath-l2/labs/ *before* the command that creates it runs, so `lab down`, a failing test or
a Ctrl-C in the middle of `lab up` can always remove exactly what was made, and nothing else.
Faults are applied and reverted separately from the base, which lets the test suite boot one QEMU
guest and move it from healthy to fdb-mismatch and back.
"""
