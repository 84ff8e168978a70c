"""Open-loop throughput on the shape real traffic has (issue 16).

    python -m bench.open_loop                        # full sweep, about 10 minutes
    python -m bench.open_loop --setups relay,im1     # without the 2-node line
    python -m bench.open_loop --smoke                # tiny liveness run (CI), under a minute

N WebSocket sessions (default 5,000), K of them sending (500), each sender to P fixed peers (5)
whose conversations a warm-up creates, 64-byte bodies. Open loop: messages go out on a fixed
schedule whatever the server answers, and latency counts from the scheduled send time. The
server under test and its PostgreSQL (and nats-server, for the 2-node line) share the server
core; the generator, this process, has the other one.

For every rate of the sweep: delivered %, p50/p99/p99.9 send->deliver, p99 send->ack, CPU per
message of the server(s), PostgreSQL and NATS, the server's RSS per session, and the generator's
own CPU and schedule lag (a step where the generator is the limit is marked invalid). The knee is
the highest offered rate delivered >= 99.9% with p99 send->deliver < 50 ms; a bare relay measured
by the same generator in the same run gives the ratio knee(im-server)/knee(relay).
"""
