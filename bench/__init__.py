"""relay's benchmark suite (issue 5): `python -m bench` prints the table.

Modules, in the order data flows through a run:

    stack.py          starts redis-server, the model server, gunicorn (one gevent
                      worker) and worker.py; reads RSS, CPU and Redis connections
    pinning.py        --pin: the system under test on one core, the load on another
    model_server.py   OpenAI-compatible streaming, each delta stamped with its send time
    client.py         the load client process: SSE streams, long-poll loops, TTFT
                      (against relay, or against Nchan's locations)
    nchan.py          --pin's anchor: nginx with Nchan and its Redis store, and its fan-outs
    publisher.py      what the model server is to relay, for Nchan: stamped messages
    redis_floor.py    XADD -> XREAD on the same redis-server: the floor
    cpu.py            the CPU each process used in a measured window
    fanouts.py        relay's SSE and long-poll fan-outs, measured (Nchan's are in nchan.py)
    scenarios.py      the six scenarios, each returning rows for the table
    sweep.py          --sweep: the fan-outs at rising rates, relay and Nchan side by side
    knee.py           the sweep's steps judged: the knee of each, CPU per operation, tables
    chart.py          the sweep's PNG: p99 against rate (docs/performance-sweep.png)
    report.py         the table and bench/results/latest.json
"""
