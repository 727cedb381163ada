"""The write side: the worker, from a job on the list to an answer in the stream and in SQL.

Owns: the worker loop (`worker.py`), one answer's generation (`generation.py`,
`answer.py`), its states and allowed moves (`lifecycle.py`), what it records
besides events (`ledger.py`: SQL, its claim, metrics), the model adapter and
the demo model (`llm.py`, `demo_model.py`), the only code that writes
streams (`writer.py`), and the answer cache (`cache.py`).
May import: `webapp.ops`, `webapp.storage`, `webapp.settings`,
`webapp.exceptions`. Never `webapp.read`: the write side reads no stream for
a client.
"""
