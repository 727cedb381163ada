"""A long Markdown answer, as a model streams it: bench/page_render.py's input, and the page tests'.

The kind of answer people ask models for: headings, paragraphs with inline
code, emphasis and links, comparison tables, nested lists, task lists, code
blocks and quotes, then a long numbered list. It is cut into tokens the size a tokenizer makes (a word
with its leading space, a number, a run of punctuation), one delta each.
"""

from __future__ import annotations

import re

TOKEN = re.compile(r" ?[A-Za-z]+| ?[0-9]{1,3}| ?[^\sA-Za-z0-9]{1,3}|\s+")


def section(n: int) -> str:
    """One part of the answer; each is a little different so no two render alike."""
    return f"""## Part {n}: choosing a transport

Here is a **comparison** of the options for step {n}, with *emphasis*, `inline_code()`
and a link to [the docs](https://example.com/docs/Streams_(v{n})). ~~The old one~~ is gone.

| Option | Latency | Cost | Replay | Notes |
|:-------|--------:|-----:|:------:|:------|
| Redis Streams | {n} ms | low | yes | replay from any id |
| Pub/Sub | 0.{n} ms | low | no | fire and forget |
| Kafka | {n + 4} ms | high | yes | heavy to run |
| Nchan | {n} ms | medium | yes | an nginx module |
| Long-poll | {n * 20} ms | low | yes | works behind any proxy |

Steps to follow:

1. Install the server
   - on Debian: `apt-get install redis-server`
   - on macOS: `brew install redis`
     - then `brew services start redis`
2. Configure it for step {n}
3. Run the worker and watch https://example.com/status/{n}

- [x] streams tested
- [ ] cluster tested in region {n}

```python
def follow(stream, cursor):
    \"\"\"Yield every event after `cursor`, part {n}.\"\"\"
    for event in stream.read(after=cursor, count={n * 10}):
        yield event.id, event.data
```

> Note: a reload shows the text so far at once, then the rest as it arrives.

"""


def step(n: int) -> str:
    """One item of a long numbered list with a blank line between items (a loose
    list): one block that grows with every item, the costliest shape to stream."""
    pad = " " * (len(str(n)) + 2)
    return (
        f"{n}. **Check step {n}.** Run `relay check --step {n}` and compare with "
        f"https://example.com/checks/{n}; it should say *ok*.\n"
        f"{pad}- if it fails, read the log\n{pad}- then try again\n\n"
    )


def markdown_answer(tokens: int = 2000) -> list[str]:
    """The answer's deltas: `tokens` pieces that join into one Markdown document,
    three sections of everything, then a long list."""
    text = "".join(section(n) for n in range(1, 4)) + "Then check each step:\n\n"
    n = 0
    while len(TOKEN.findall(text)) < tokens:
        n += 1
        text += step(n)
    pieces = TOKEN.findall(text)
    assert "".join(pieces) == text, "the tokenizer must cover every character"
    return pieces[:tokens]
