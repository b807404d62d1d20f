"""The Switchboard gateway.

Importing any ``server`` module first runs this file, so it is the one place that can set
grpcio's runtime defaults before grpc core reads them (they are read once, when ``grpc`` is first
imported; setting them later has no effect).
"""

import os

# grpcio 1.85's EventEngine listener hands each accepted connection's reads and writes between
# its own thread pool and the grpc.aio poller: about 8 context switches per unary call on the
# gateway, against about 4 on iomgr's listener. Measured with a C client (h2load, one channel,
# 64 streams), iomgr's gave 0.87x the gateway CPU per call and 1.09x the calls per second
# (median of 5 interleaved runs), and ~10% lower c1 p50. An operator's own GRPC_EXPERIMENTS
# wins; `bench/grpc_floor.py` measures either setting on the do-nothing servicer.
os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_listener")
