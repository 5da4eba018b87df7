"""Real-time serving: a fitted model behind a micro-batcher, a cache and an HTTP app,
and the load generators that measure it.

- :mod:`.adapters` -- a fitted model as a servable: batched top-k, online updates, cold start;
- :mod:`.batcher` -- the asyncio dynamic micro-batcher (with a priority lane);
- :mod:`.cache` -- the top-k answer cache, capped by the items it holds;
- :mod:`.state` -- where users' online state lives: this process, or Redis shared by replicas;
- :mod:`.replicas` -- N ``workbench serve`` replicas behind one port, and a ``redis-server``;
- :mod:`.service` -- the serving core: validation, cache, batcher, counters;
- :mod:`.exporter` -- the core's counters as Prometheus metrics;
- :mod:`.problems` -- what an error body may quote of the input (short excerpts);
- :mod:`.app` -- the FastAPI app over the core (admission control, write token, error
  bodies, metrics), and a server thread;
- :mod:`.load` -- closed- and open-loop load generators, in-process or over HTTP;
- :mod:`.scenarios` -- notebook 07's experiments built from them;
- :mod:`.prequential` -- streaming (prequential) evaluation: replay a log through the
  service under an update policy, scoring each event before the system learns from it;
- :mod:`.streaming` -- notebook 08's study built on it (intervals, staleness, cost).

Serving may import models, metrics, data and devices; it is independent of evaluation
and speed. A new serving policy goes into :mod:`.service` (or the batcher it drives).
"""
