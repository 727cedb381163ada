"""The write side: the worker, from a job on the list to an answer in the stream and in SQL.

Owns: the worker loop (`worker.py`), one answer's generation (`generation.py`,
`answer.py`, `attempt.py`), its steps (`step_loop.py`, `model_call.py`,
`tool_runs.py`, `steps.py`, `history.py`), its states and allowed moves
(`lifecycle.py`), what it records besides events (`ledger.py`: SQL, its
claim, metrics; `step_journal.py`: the journal of steps), the model adapter and
the demo model (`llm.py`, `model_wire.py`, `demo_model.py`), tool calls as
models send and read them (`tool_calls.py`), the tools themselves (`tools/`:
sources, registry, the asyncio thread), the only code that writes streams
(`writer.py`), and the answer cache (`cache.py`).
May import: `webapp.tools` (the declaration API apps write tools with),
`webapp.ops`, `webapp.storage`, `webapp.settings`, `webapp.exceptions`.
Never `webapp.read`: the write side reads no stream for a client.
"""
