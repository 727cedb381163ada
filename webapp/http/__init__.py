"""The HTTP edge: every route of API.md, and everything a request is checked against.

Owns: the JSON API (`api.py`, `sessions.py`), the one way to ask for an
answer (`prompts.py`), the inputs a waiting tool call gets (`tool_inputs.py`),
event delivery over SSE and long-poll (`stream.py`, `sse.py`, `longpoll.py`),
the one plan of every long-poll, whichever way in it took (`poll_plan.py`), the AI
SDK's routes and stream (`chat_api.py`, `chat_stream.py`, `ui_stream.py`;
a tool call's chunks and parts `ui_tools.py`, the listed messages
`ui_messages.py`, the posted body `chat_request.py`, a waiting answer's
inputs `continuations.py`),
request parameters (`params.py`), access control at the edge (`auth.py`),
CORS (`cors.py`), limits (`limits.py`), the JSON errors (`errors.py`), the
chat page (`pages.py`) and `/healthz` `/readyz` (`health.py`).
May import: every package below it. Nothing imports it but `create_app`
and the CLI.
"""
