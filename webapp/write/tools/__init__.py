"""Tools on the worker's side: where they come from, how a call runs, what it gives back (issue 23).

Owns: the registry the generation loop asks (`registry.py`: the tools to
offer, `run` for a server tool, each tool's properties), the tool sources
(`python_tools.py` for TOOLS_MODULE and the demo tools in `demo.py`,
`mcp_servers.py` for MCP_SERVERS; CLIENT_TOOLS are only described), a
tool's description and checks (`spec.py`), and the one asyncio loop of the
worker on its own thread (`bridge.py`).
May import: `webapp.tools` (the declaration API apps use), `webapp.write`'s
`tool_calls` (calls and results) and `lifecycle` (an MCP server's states),
`webapp.storage.events`,
`webapp.settings`, `webapp.exceptions`. The `mcp` SDK only inside
`mcp_servers.py`, and only when MCP_SERVERS names a server: web processes
never import this package, and a worker without MCP servers never pays for
the SDK.
"""
