"""The read side: from a session's Redis stream to the readers of one web process.

Owns: the only code that reads streams (`reader.py`), the hub that follows
every session a process serves over one pub/sub connection (`hub.py`), a
reader's place in a stream (`follower.py`), the hub's per-session channels
and their byte budget (`channel.py`, `buffers.py`), the entries with their
wire encodings (`entries.py`), and a session's snapshot (`snapshot.py`).
May import: `webapp.ops`, `webapp.storage`, `webapp.settings`,
`webapp.exceptions`. Never `webapp.write`: the read side writes no stream.
"""
