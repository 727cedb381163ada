"""Process settings for steady latency: Python's garbage collector and gevent.

A full collection walks every tracked object; with a thousand open streams
(their greenlets, frames, sockets, buffered entries) it took 80-170 ms in the
fan-out bench, during which the process delivers nothing: that was the whole
of the web's p99. So, once the app is loaded:

- `gc.freeze()` moves everything that exists (modules, the app, ~100k
  objects) out of the collector's sight for good;
- the oldest generation is collected only after 1000 middle ones instead of
  10. Young cycles are still collected as often as before; only garbage
  cycles that lived through two young collections wait longer (at the
  bench's rates, minutes instead of seconds).

gevent's greenlet tree tracking (a captured spawning stack per greenlet, for
debugging) is turned off too: per connection, it is memory and GC work.
"""

from __future__ import annotations

import gc

import gevent

# Python's defaults are (700, 10, 10).
GC_THRESHOLDS = (700, 10, 1000)


def settle() -> None:
    """Call once per process, after the app is loaded and before serving."""
    gevent.config.track_greenlet_tree = False
    gc.collect()  # also resets the generation counts
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
