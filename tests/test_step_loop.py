"""An answer in steps, without Redis, SQL or a model: the loop's decisions and the order of its writes.

The generation runs with recording I/O (tests/support/recorders.py): a
scripted model, a writer, a ledger, and a step journal that keeps
storage/journal.py's rules in memory, all appending to one list, so each
test reads what was recorded, written and stored, in order. The tools are
real Python tools (webapp/tools.py) in a real registry. End to end, with a
real MCP server, Redis, SQL and processes: test_tool_answers.py.
"""

from __future__ import annotations

import json
from typing import Any

import gevent
import gevent.event
import pytest

from tests.support.recorders import ASKED, USAGE, Lived, MemoryJournal, ScriptedModel, stop
from webapp.exceptions import Cancelled
from webapp.settings.config import TOOL_OUTPUT_MAX_BYTES
from webapp.storage import events, models
from webapp.storage.models import Turn
from webapp.storage.parts import Parts
from webapp.tools import tool
from webapp.write.history import build_prompt
from webapp.write.lifecycle import State
from webapp.write.llm import Delta, Finish, Reasoning
from webapp.write.steps import Step, StepCall
from webapp.write.tool_calls import NOT_JSON, ToolCall
from webapp.write.tools.python_tools import PythonTools
from webapp.write.tools.registry import ToolRegistry

pytestmark = pytest.mark.timeout(30)

NUMBERS = {
    "type": "object",
    "properties": {"numbers": {"type": "array", "items": {"type": "number"}}},
    "required": ["numbers"],
}
AMOUNT = {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]}
PATH = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


class Tools:
    """Python tools for these tests, writing each run into the generation's list."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.started = gevent.event.Event()
        started = self.started

        def log_run(name: str) -> None:
            self.log.append(("ran", name))

        @tool(name="add", description="Add numbers.", parameters=NUMBERS, idempotent=True)
        def add(numbers: list[float]) -> dict[str, float]:
            log_run("add")
            return {"sum": sum(numbers)}

        @tool(name="pay", description="Pay an amount.", parameters=AMOUNT)
        def pay(amount: float) -> dict[str, float]:
            log_run("pay")
            return {"paid": amount}

        @tool(
            name="delete_file", description="Delete a file.", parameters=PATH, needs_approval=True
        )
        def delete_file(path: str) -> str:
            log_run("delete_file")
            return f"deleted {path}"

        @tool(name="pick_color", description="Ask the user for a color.", runs_on="client")
        def pick_color() -> None:
            raise AssertionError("a client tool never runs on the server")

        @tool(name="slow", description="Take a long time.")
        def slow() -> str:
            log_run("slow")
            started.set()
            gevent.sleep(20)
            return "never"

        functions = [add, pay, delete_file, pick_color, slow]
        self.registry = ToolRegistry([PythonTools("test tools", functions)], 5.0)

    @property
    def ran(self) -> list[str]:
        return [entry[1] for entry in self.log if entry[0] == "ran"]


def calls() -> Finish:
    return Finish("scripted-1", events.FINISH_TOOL_CALLS, USAGE)


def added(text: str, numbers: list[int]) -> list[dict[str, Any]]:
    """A step that called `add` (id call_a) as the model's history gives it back."""
    arguments = json.dumps({"numbers": numbers})
    call = {"id": "call_a", "type": "function", "function": {"name": "add", "arguments": arguments}}
    return [
        {"role": "assistant", "content": text, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_a", "content": json.dumps({"sum": sum(numbers)})},
    ]


def lived(model: ScriptedModel, tools: Tools, **options: Any) -> Lived:
    made = Lived(model, tools=tools.registry, **options)
    tools.log = made.journal  # the tools' runs go in the same list, in order
    return made


def run(model: ScriptedModel, tools: Tools, **options: Any) -> Lived:
    made = lived(model, tools, **options)
    made.generation.run()
    return made


def events_of(made: Lived, name: str) -> list[dict[str, Any]]:
    return [entry[1] for entry in made.journal if entry[0] == name]


def folded(*lives: Lived) -> Parts:
    """What a client that followed these attempts' events holds (API.md, Stored)."""
    parts = Parts()
    for made in lives:
        for entry in made.journal:
            if entry[0] in (events.START, events.CHUNK, events.REASONING, "tool_call"):
                parts.apply(entry[0], entry[1])
            elif entry[0] == events.TOOL_RESULT:
                parts.apply(entry[0], entry[1])
    return parts


def stored_parts(made: Lived, name: str = "store") -> list[dict[str, Any]]:
    (fields,) = [entry[1] for entry in made.journal if entry[0] == name]
    return json.loads(fields["parts"])


@pytest.fixture()
def tools() -> Tools:
    return Tools()


def test_a_tool_step_is_recorded_before_its_tool_runs_and_the_next_step_reads_its_result(
    tools: Tools,
) -> None:
    model = ScriptedModel(
        [
            Reasoning("sum"),
            Delta("Adding."),
            ToolCall("call_a", "add", {"numbers": [2, 3]}),
            calls(),
        ],
        [Delta("It is "), Delta("5."), stop()],
    )
    made = run(model, tools)

    assert made.generation.state is State.ENDED
    assert made.writes == [
        "take",
        "start",
        "reasoning",
        "chunk",
        "step_recorded",  # the call recorded running with it: no write of its own
        "tool_call",
        "ran",
        "result_recorded",
        "tool_result",
        "chunk",
        "chunk",
        "store",
        "end",
        "retired",
    ]
    assert made.steps.calls["call_a"]["attempt"] == 1
    assert [data["step"] for data in events_of(made, "chunk")] == [0, 1, 1]
    assert events_of(made, "tool_call") == [
        {
            "message_id": made.generation.job.message_id,
            "step": 0,
            "call_id": "call_a",
            "name": "add",
            "arguments": {"numbers": [2, 3]},
            "runs_on": "server",
            "approval_id": None,
        }
    ]
    (result,) = events_of(made, "tool_result")
    assert (result["status"], result["output"], result["error"]) == ("ok", {"sum": 5}, None)
    # The next model call gets the step as OpenAI tool_calls and tool messages.
    assert model.asked[1] == [*ASKED, *added("Adding.", [2, 3])]
    assert [r["step_key"] for r in model.requests] == ["answer_1/0", "answer_1/1"]
    assert {t["function"]["name"] for t in model.requests[0]["tools"]} >= {"add", "pay"}
    assert [r["tool_choice"] for r in model.requests] == [None, None]
    end = made.data("end")
    assert (end["steps"], end["tool_calls"], end["chunks"], end["reasoning_chunks"]) == (2, 1, 3, 1)
    assert end["text_length"] == len("Adding.It is 5.")
    assert end["usage"] == {name: 2 * count for name, count in USAGE.items()}
    stored = made.data("store")
    assert (stored["content"], stored["reasoning"], stored["chunk_count"]) == (
        "Adding.It is 5.",
        "sum",
        3,
    )
    # The parts stored are the parts a client folds from the events.
    assert stored_parts(made) == folded(made).items
    assert [p["type"] for p in stored_parts(made)] == ["reasoning", "text", "tool", "text"]
    assert ("tool", "add", "ok", True) in made.ledger.metrics


def test_two_calls_of_one_step_run_side_by_side(tools: Tools) -> None:
    model = ScriptedModel(
        [
            ToolCall("call_a", "add", {"numbers": [1]}),
            ToolCall("call_p", "pay", {"amount": 7}),
            calls(),
        ],
        [Delta("Done."), stop()],
    )
    made = run(model, tools)

    assert made.writes[:5] == ["take", "start", "step_recorded", "tool_call", "tool_call"]
    assert sorted(tools.ran) == ["add", "pay"]
    results = {r["call_id"]: r["output"] for r in events_of(made, "tool_result")}
    assert results == {"call_a": {"sum": 1}, "call_p": {"paid": 7}}
    assert [m["role"] for m in model.asked[1][-3:]] == ["assistant", "tool", "tool"]
    assert made.data("end")["tool_calls"] == 2


def test_after_max_tool_steps_the_last_call_offers_none_and_ends_the_answer(tools: Tools) -> None:
    add = [ToolCall(f"call_{i}", "add", {"numbers": [i]}) for i in range(3)]
    model = ScriptedModel(
        [add[0], calls()],
        [add[1], calls()],
        # Told to call none, it calls one anyway: ignored, its text ends the answer.
        [Delta("Enough."), add[2], calls()],
    )
    made = run(model, tools, max_tool_steps=2)

    assert [r["tool_choice"] for r in model.requests] == [None, None, "none"]
    assert model.requests[2]["tools"] == model.requests[0]["tools"]
    assert tools.ran == ["add", "add"]
    end = made.data("end")
    assert (end["finish_reason"], end["steps"], end["tool_calls"]) == ("stop", 3, 2)
    assert made.data("store")["content"] == "Enough."


def test_calls_that_cannot_run_get_error_results_the_model_reads(tools: Tools) -> None:
    model = ScriptedModel(
        [
            ToolCall("call_u", "drop_table", {}),
            ToolCall("call_i", "add", {"numbers": "many"}),
            ToolCall("call_j", "add", "{not json", NOT_JSON),
            calls(),
        ],
        [Delta("Sorry."), stop()],
    )
    made = run(model, tools)

    assert tools.ran == [] and "call_started" not in made.writes
    errors = {r["call_id"]: r["error"] for r in events_of(made, "tool_result")}
    assert [r["status"] for r in events_of(made, "tool_result")] == ["error"] * 3
    assert "no tool named 'drop_table'" in errors["call_u"]
    assert "invalid arguments at numbers" in errors["call_i"]
    assert errors["call_j"] == NOT_JSON
    assert events_of(made, "tool_call")[2]["arguments"] == "{not json"
    told = [m["content"] for m in model.asked[1] if m["role"] == "tool"]
    assert all(text.startswith("error: ") for text in told)
    assert ("tool", "(unknown)", "error", False) in made.ledger.metrics


# -- waiting for a person or the front end ----------------------------------------


def paused(tools: Tools, call: ToolCall) -> Lived:
    """An answer whose step 0 asks for `call`, paused for its input."""
    model = ScriptedModel([Delta("One moment."), call, calls()])
    return run(model, tools)


def resumed(tools: Tools, first: Lived, script: list[Any], **options: Any) -> Lived:
    """The attempt that goes on with `first`'s paused answer (a resume job, attempt 2)."""
    journal = first.steps
    journal.attempt = 2
    return run(ScriptedModel(script), tools, attempt=2, resume=True, steps=journal, **options)


def test_an_approval_pauses_the_answer_holding_nothing_and_an_approval_goes_on(
    tools: Tools,
) -> None:
    first = paused(tools, ToolCall("call_d", "delete_file", {"path": "a.txt"}))

    assert first.generation.state is State.PAUSED
    assert first.writes == [
        "take",
        "start",
        "chunk",
        "step_recorded",
        "tool_call",
        "paused",
        "store_waiting",
        "waiting",
    ]
    assert events_of(first, "tool_call")[0]["approval_id"] == "call_d"
    assert first.data("waiting")["for"] == [{"call_id": "call_d", "kind": "approval"}]
    waiting = first.data("store_waiting")
    assert waiting["content"] == "One moment."
    assert [p.get("status") for p in json.loads(waiting["parts"])] == [None, "waiting_approval"]
    assert tools.ran == [] and ("waiting", True) in first.ledger.metrics

    first.steps.give("call_d", {"approved": True, "reason": None})
    then = resumed(tools, first, [Delta("Deleted."), stop()])

    assert then.generation.state is State.ENDED
    assert then.writes == [
        "resumed",
        "take",
        "start",
        "chunk",  # step 0 again, as it was first written
        "tool_call",
        "call_started",
        "ran",
        "result_recorded",
        "tool_result",
        "chunk",
        "store",
        "end",
        "retired",
    ]
    assert then.data("start")["from_step"] == 0 and then.data("start")["attempt"] == 2
    assert tools.ran == ["delete_file"]
    assert len(then.generation.model.asked) == 1, "step 0 was never asked again"
    end = then.data("end")
    assert (end["chunks"], end["steps"], end["tool_calls"]) == (2, 2, 1)
    # A client that followed both attempts holds what was stored, and what `end` counts.
    assert stored_parts(then) == folded(first, then).items
    assert len(folded(first, then).content) == end["text_length"]
    assert ("waiting", False) in then.ledger.metrics


def test_a_step_runs_what_it_can_then_waits_and_its_run_call_never_runs_again(
    tools: Tools,
) -> None:
    model = ScriptedModel(
        [
            ToolCall("call_a", "add", {"numbers": [1, 1]}),
            ToolCall("call_d", "delete_file", {"path": "c"}),
            calls(),
        ]
    )
    first = run(model, tools)

    assert first.writes[-6:] == [
        "ran",
        "result_recorded",
        "tool_result",
        "paused",
        "store_waiting",
        "waiting",
    ]
    assert tools.ran == ["add"]
    first.steps.give("call_d", {"approved": True})
    then = resumed(tools, first, [Delta("Both done."), stop()])

    assert tools.ran == ["delete_file"], "the attempt that went on ran delete_file alone"
    # Step 0 again: its calls, and add's recorded result; then delete_file's.
    assert [e["call_id"] for e in events_of(then, "tool_result")] == ["call_a", "call_d"]
    told = [m["tool_call_id"] for m in then.generation.model.asked[0] if m["role"] == "tool"]
    assert told == ["call_a", "call_d"]
    assert stored_parts(then) == folded(first, then).items


def test_a_denied_call_does_not_run_and_the_model_is_told_why(tools: Tools) -> None:
    first = paused(tools, ToolCall("call_d", "delete_file", {"path": "a.txt"}))
    first.steps.give("call_d", {"approved": False, "reason": "keep it"})
    then = resumed(tools, first, [Delta("Kept."), stop()])

    assert tools.ran == []
    (result,) = events_of(then, "tool_result")
    assert (result["status"], result["error"]) == ("denied", "keep it")
    told = [m["content"] for m in then.generation.model.asked[0] if m["role"] == "tool"]
    assert told == [
        "denied: the user did not allow this call, so it did not run. Their reason: keep it"
    ]


@pytest.mark.parametrize(
    ("given", "status", "told"),
    [
        ({"output": {"color": "red"}}, "ok", '{"color": "red"}'),
        ({"error": "the user closed the dialog"}, "error", "error: the user closed the dialog"),
    ],
)
def test_a_client_tool_waits_for_the_front_end_and_its_output_is_the_result(
    tools: Tools, given: dict[str, Any], status: str, told: str
) -> None:
    first = paused(tools, ToolCall("call_c", "pick_color", {}))
    assert events_of(first, "tool_call")[0]["runs_on"] == "client"
    assert first.data("waiting")["for"] == [{"call_id": "call_c", "kind": "output"}]

    first.steps.give("call_c", given)
    then = resumed(tools, first, [Delta("Red it is."), stop()])

    (result,) = events_of(then, "tool_result")
    assert result["status"] == status
    assert [m["content"] for m in then.generation.model.asked[0] if m["role"] == "tool"] == [told]


def test_a_client_output_too_large_to_pass_on_is_an_error_result(tools: Tools) -> None:
    first = paused(tools, ToolCall("call_c", "pick_color", {}))
    first.steps.give("call_c", {"output": "x" * (TOOL_OUTPUT_MAX_BYTES + 1)})
    then = resumed(tools, first, [Delta("Too much."), stop()])

    (result,) = events_of(then, "tool_result")
    assert result["status"] == "error" and "over the" in result["error"]


def test_inputs_that_came_before_the_pause_go_on_in_the_same_attempt(tools: Tools) -> None:
    model = ScriptedModel(
        [ToolCall("call_d", "delete_file", {"path": "b"}), calls()], [Delta("Gone."), stop()]
    )
    made = lived(model, tools)
    made.steps.before_pause = lambda: made.steps.give("call_d", {"approved": True})
    made.generation.run()

    assert made.generation.state is State.ENDED
    assert "went_on" in made.writes and "waiting" not in made.writes
    assert tools.ran == ["delete_file"]


def test_a_cancel_of_a_waiting_answer_ends_it_with_the_call_denied(tools: Tools) -> None:
    first = paused(tools, ToolCall("call_d", "delete_file", {"path": "a.txt"}))
    # The cancel woke it: the resumed attempt's `start` reply says a cancel was asked.
    then = resumed(tools, first, [], cancel_from=1)

    assert then.writes == [
        "resumed",
        "take",
        "start",
        "chunk",
        "tool_call",
        "tool_result",
        "store",
        "end",
        "retired",
    ]
    (result,) = events_of(then, "tool_result")
    assert result["status"] == "denied" and "cancelled" in result["error"]
    assert then.data("end")["finish_reason"] == "cancelled"
    assert then.data("store")["status"] == models.CANCELLED
    assert stored_parts(then) == folded(first, then).items
    assert tools.ran == [] and then.generation.model.asked == []


def test_a_cancel_asked_just_before_the_pause_ends_the_answer(tools: Tools) -> None:
    model = ScriptedModel([ToolCall("call_d", "delete_file", {"path": "b"}), calls()])
    made = lived(model, tools)
    made.steps.cancel = True  # the cancel's wake found nothing paused yet
    made.generation.run()

    assert "waiting" not in made.writes and "paused" not in made.writes
    assert made.data("end")["finish_reason"] == "cancelled"
    assert events_of(made, "tool_result")[0]["status"] == "denied"


# -- exactly once, across attempts -------------------------------------------------


def recorded(tools: Tools, *calls_in_step: ToolCall, started: bool = False) -> MemoryJournal:
    """A journal whose step 0 attempt 1 recorded (its calls started, if `started`), then lost."""
    journal = MemoryJournal([], attempt=1)
    step = Step(0, [Delta("Working.")], finish=calls())
    step.calls = [StepCall.decide(call, tools.registry) for call in calls_in_step]
    journal.record_step(0, step.output(), [call.new_call() for call in step.calls])
    for call in calls_in_step if started else ():
        journal.start_call(call.call_id)
    journal.attempt = journal.owner = 2  # the next attempt began (jobs.begin)
    return journal


def test_a_plain_call_lost_as_it_ran_is_in_doubt_and_never_runs_again(tools: Tools) -> None:
    journal = recorded(tools, ToolCall("call_p", "pay", {"amount": 5}), started=True)
    made = run(ScriptedModel([Delta("Unsure."), stop()]), tools, attempt=2, steps=journal)

    assert tools.ran == []
    (result,) = events_of(made, "tool_result")
    assert result["status"] == "in_doubt"
    assert made.writes[:6] == ["begin", "take", "start", "chunk", "tool_call", "call_started"]
    (told,) = [m["content"] for m in made.generation.model.asked[0] if m["role"] == "tool"]
    assert "may or may not have happened" in told


def test_an_idempotent_call_lost_as_it_ran_runs_again(tools: Tools) -> None:
    journal = recorded(tools, ToolCall("call_a", "add", {"numbers": [4]}), started=True)
    made = run(ScriptedModel([Delta("4."), stop()]), tools, attempt=2, steps=journal)

    assert tools.ran == ["add"]
    assert events_of(made, "tool_result")[0]["status"] == "ok"


def test_after_its_tools_finished_a_step_is_neither_sent_nor_asked_again(tools: Tools) -> None:
    journal = recorded(tools, ToolCall("call_a", "add", {"numbers": [4]}))
    journal.attempt = journal.owner = 1
    journal.start_call("call_a")
    journal.record_result("call_a", {"status": "ok", "output": {"sum": 4}, "error": None})
    journal.attempt = journal.owner = 2
    model = ScriptedModel([Delta("It is 4."), stop()])
    made = run(model, tools, attempt=2, steps=journal)

    assert tools.ran == []
    assert made.writes == ["begin", "take", "start", "chunk", "store", "end", "retired"]
    assert made.data("start")["from_step"] == 1
    assert made.data("chunk")["step"] == 1
    assert len(model.asked) == 1 and model.asked[0][-1]["role"] == "tool"
    end = made.data("end")
    assert (end["chunks"], end["steps"], end["tool_calls"]) == (2, 2, 1), "step 0 counts"
    assert made.data("store")["content"] == "Working.It is 4."


def test_a_newer_attempt_owning_the_journal_fences_the_step_off(tools: Tools) -> None:
    model = ScriptedModel([ToolCall("call_a", "add", {"numbers": [1]}), calls()])
    made = lived(model, tools)
    made.steps.owner = 2
    made.generation.run()

    assert made.generation.state is State.FENCED
    assert made.writes == ["take", "start"] and tools.ran == []


def test_a_cancel_while_tools_run_ends_the_answer_with_the_call_in_doubt(tools: Tools) -> None:
    model = ScriptedModel([ToolCall("call_s", "slow", {}), calls()])
    made = lived(model, tools)
    running = gevent.spawn(made.generation.run)
    assert tools.started.wait(5), "the tool did not start"
    assert made.generation.state is State.TOOLS
    running.kill(Cancelled, block=False)  # as the worker's cancel poll does
    running.join(10)

    assert made.generation.state is State.ENDED
    (result,) = events_of(made, "tool_result")
    assert result["status"] == "in_doubt"
    assert made.data("end")["finish_reason"] == "cancelled"


# -- the history of the next prompt -------------------------------------------------


def test_an_answer_with_tools_goes_back_to_the_model_step_by_step() -> None:
    parts = [
        {"type": "reasoning", "step": 0, "text": "hm"},
        {"type": "text", "step": 0, "text": "Adding."},
        {
            "type": "tool",
            "step": 0,
            "call_id": "call_a",
            "name": "add",
            "arguments": {"numbers": [1, 2]},
            "runs_on": "server",
            "status": "ok",
            "output": {"sum": 3},
            "error": None,
        },
        {"type": "text", "step": 1, "text": "It is 3."},
    ]
    history = [
        Turn(1, "q1", models.USER, models.DONE, "1 + 2?", 0),
        Turn(2, "a1", models.ASSISTANT, models.DONE, "Adding.It is 3.", 1, json.dumps(parts)),
        Turn(3, "q2", models.USER, models.DONE, "and 3 + 4?", 0),
    ]
    assert build_prompt(history, "", 10_000) == [
        {"role": "user", "content": "1 + 2?"},
        *added("Adding.", [1, 2]),
        {"role": "assistant", "content": "It is 3."},
        {"role": "user", "content": "and 3 + 4?"},
    ]
