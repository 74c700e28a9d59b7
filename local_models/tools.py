"""Tool calls on a local model, in OpenAI's modes, with vLLM's own machinery.

The modes are OpenAI's `tool_choice`:

- a named function, or "required": served by **any** chat model. The output is constrained
  by vLLM structured output to that function's `parameters` schema (named), or to a JSON
  array of `{"name", "parameters"}` objects over the tools (required; one item at most when
  `parallel_tool_calls` is false): the schema vLLM's own server builds
  (`get_json_schema_from_tools`), read back as tool calls by vLLM's own JSON readers;
- "auto" (or tools without a `tool_choice`): the model decides whether and what to call,
  which only a tool-call parser for its own format can tell (`EngineConfig.tool_parser`:
  hermes, llama3_json, mistral, ... — vLLM's `ToolParser`s). Without one it is refused;
- "none": the tools are shown to the chat template and nothing is read back.

With a reasoning parser (`EngineConfig.reasoning_parser`: deepseek_r1, qwen3, ... — vLLM's
`ReasoningParser`s) every chat answer is read, tools or not: vLLM's parser splits the model's
thinking off first and reads tool calls in what follows, as vLLM's own server composes them.

`ToolCalling` (one per engine) turns a request's tools into a `ToolSession`: the request as
vLLM's `ChatCompletionRequest` (so vLLM's own validation of tools and tool_choice runs, its
errors naming the field), adjusted by the parser (the structured-output constraint, special
tokens kept where the parser reads them), and a `ToolReader` per choice, which feeds the
generated text through vLLM's `Parser.parse_delta` — whole answers too, so their first call
arrives with their first tokens — and returns content and `ToolCallPiece`s.

Chat templates that take no `tools` (SmolLM2's) still let the model see them: the tools as a
system note, an assistant's earlier calls as their JSON (`chat_template_input`, which the
gateway's token counts use too).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from .errors import BadRequest, EngineFailure
from .interface import GenerateRequest, ToolCallPiece, ToolMode

Mode = Literal["required", "named", "auto", "none"]
Verify = Callable[[Any], None]  # checks vLLM SamplingParams as the engine will (raises on what it refuses)


def parser_class(name: str | None, reasoning: str | None = None) -> Any:
    """vLLM's `Parser` class for a tool-call parser's name (without one, the forced modes' reader),
    with a reasoning parser's name before it: the thinking split off, then tool calls read in the rest."""
    from vllm.parser import ParserManager
    from vllm.parser.abstract_parser import DelegatingParser
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    if reasoning:
        thinkers = ReasoningParserManager.list_registered()
        if reasoning not in thinkers:
            raise EngineFailure(f"Unknown reasoning parser {reasoning!r}; vLLM knows: {', '.join(thinkers)}.")
    if not name:
        base: Any = ParserManager.get_parser(reasoning_parser_name=reasoning) if reasoning else DelegatingParser
        return type("ForcedToolCalls", (base,), {"tool_parser_cls": _json_only_parser()})
    known = sorted({*ToolParserManager.tool_parsers, *ToolParserManager.lazy_parsers})
    if name not in known:
        raise EngineFailure(f"Unknown tool-call parser {name!r}; vLLM knows: {', '.join(known)}.")
    return ParserManager.get_parser(tool_parser_name=name, reasoning_parser_name=reasoning, enable_auto_tools=True)


def _json_only_parser() -> type:
    """A `ToolParser` that finds no calls in free text: with it, vLLM's `DelegatingParser` reads
    forced calls (its JSON paths for "required" and a named function) and nothing else."""
    from vllm.entrypoints.generate.base.protocol import DeltaMessage, ExtractedToolCallInformation
    from vllm.tool_parsers import ToolParser

    class JsonOnly(ToolParser):
        def extract_tool_calls(self, model_output: str, request: Any) -> ExtractedToolCallInformation:
            return ExtractedToolCallInformation(tools_called=False, tool_calls=[], content=model_output)

        def extract_tool_calls_streaming(
            self, previous_text: str, current_text: str, delta_text: str, *rest: Any
        ) -> DeltaMessage | None:
            return DeltaMessage(content=delta_text) if delta_text else None

    return JsonOnly


class ToolCalling:
    """What one engine does with tools: its modes, and a session per request."""

    def __init__(self, tokenizer: Any, parser_name: str | None, verify: Verify, reasoning_parser: str | None = None):
        self._tokenizer = tokenizer
        self.parser_name = parser_name or None
        self.reasoning_parser = reasoning_parser or None
        self._parser_cls = parser_class(self.parser_name, self.reasoning_parser)
        try:  # as vLLM's server checks it at start: a parser that can't read this tokenizer's output
            self._parser_cls(tokenizer)
        except Exception as e:
            named = [f"tool-call parser {self.parser_name!r}"] if self.parser_name else []
            named += [f"reasoning parser {self.reasoning_parser!r}"] if self.reasoning_parser else []
            raise EngineFailure(
                f"The {' and '.join(named) or 'tool-call reader'} can't be used with this model's tokenizer: "
                f"{type(e).__name__}: {e}"
            ) from None
        self._verify = verify
        self.template_takes_tools = "tools" in str(getattr(tokenizer, "chat_template", None) or "")

    @property
    def modes(self) -> list[ToolMode]:
        return ["required", "named", "auto"] if self.parser_name else ["required", "named"]

    def session(self, request: GenerateRequest) -> ToolSession | None:
        """The request's tools as vLLM takes them; None when it has none and there is no reasoning
        to split off (a reasoning parser reads every answer). Raises `BadRequest`."""
        tools = request.get("tools")
        choice = request.get("tool_choice")
        if not tools:
            if choice is None or choice == "none":
                return self._reasoning_session() if self.reasoning_parser else None
            raise BadRequest("'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice")
        vllm_request = _vllm_request(tools, choice, request.get("parallel_tool_calls"))
        mode = _mode(vllm_request.tool_choice)
        if mode == "auto" and not self.parser_name:
            raise BadRequest(
                "This local model has no tool-call parser configured (the gateway's `local.tool_parser`, "
                "e.g. hermes for Qwen2.5), so it can't decide by itself whether to call a tool "
                "(tool_choice 'auto', the default with tools). Use tool_choice 'required' or name a function.",
                param="tool_choice",
            )
        parser = self._parser_cls(self._tokenizer, vllm_request.tools)
        if mode != "none":
            vllm_request = parser.adjust_request(vllm_request)
        structured = vllm_request.structured_outputs if mode in ("required", "named") else None
        if structured is not None:
            if mode == "required":
                structured = replace(structured, json=_closed_calls(structured.json))
            self._check_schemas(structured, tools, mode)
        return ToolSession(
            request=vllm_request,
            parser_cls=self._parser_cls,
            tokenizer=self._tokenizer,
            mode=mode,
            structured=structured,
            skip_special_tokens=bool(getattr(vllm_request, "skip_special_tokens", True)),
            reasoning=self.reasoning_parser is not None,
        )

    def _reasoning_session(self) -> ToolSession:
        """A request without tools, read only for its reasoning (vLLM's request: tool_choice "none")."""
        vllm_request = _vllm_request(None, None, None)
        return ToolSession(
            request=vllm_request,
            parser_cls=self._parser_cls,
            tokenizer=self._tokenizer,
            mode="none",
            structured=None,
            skip_special_tokens=bool(getattr(vllm_request, "skip_special_tokens", True)),
            reasoning=True,
        )

    def _check_schemas(self, structured: Any, tools: list[dict[str, Any]], mode: Mode) -> None:
        """The constraint as the engine will check it; a refused one is blamed on the tool whose
        `parameters` the structured-output backend can't take (a 400 naming it)."""
        from vllm.exceptions import VLLMValidationError
        from vllm.sampling_params import SamplingParams, StructuredOutputsParams

        refused = (ValueError, TypeError, VLLMValidationError)
        try:  # on a copy: the check records the backend it chose in the params
            self._verify(SamplingParams(max_tokens=1, structured_outputs=replace(structured)))
            return
        except refused as e:
            whole = str(e)
        for i, tool in enumerate(tools):
            schema = (tool.get("function") or {}).get("parameters") or {"type": "object"}
            try:
                self._verify(SamplingParams(max_tokens=1, structured_outputs=StructuredOutputsParams(json=schema)))
            except refused as e:
                name = (tool.get("function") or {}).get("name")
                raise BadRequest(
                    f"Invalid schema for function '{name}' in tools[{i}].function.parameters: {e}",
                    param=f"tools[{i}].function.parameters",
                ) from None
        raise BadRequest(f"The tools can't be used for tool_choice {mode!r}: {whole}", param="tools")


def _closed_calls(schema: Any) -> Any:
    """vLLM's "required" schema with each call object closed: nothing but its name and parameters
    (which is all its reader takes), so a small model can't wander off into keys of its own."""
    if not isinstance(schema, dict):
        return schema
    items = schema.get("items") or {}
    calls = [{**one, "additionalProperties": False} for one in items.get("anyOf", [])]
    return {**schema, "items": {**items, "anyOf": calls}} if calls else schema


def _vllm_request(tools: list[dict[str, Any]] | None, choice: Any, parallel: bool | None) -> Any:
    """vLLM's own request for the tool fields: its validation names what is wrong."""
    from pydantic import ValidationError
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.exceptions import VLLMValidationError

    body: dict[str, Any] = {"model": "local", "messages": []}
    if tools is not None:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    try:
        return ChatCompletionRequest.model_validate(body)
    except VLLMValidationError as e:
        raise BadRequest(str(e.args[0] if e.args else e), param=e.parameter or "tools") from None
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if not str(p).startswith(("function-", "ChatCompletion"))]
        param = _param(loc)
        raise BadRequest(f"Invalid '{param}': {first.get('msg', e)}", param=param) from None
    except ValueError as e:
        raise BadRequest(str(e), param="tools") from None


def _param(loc: Sequence[str]) -> str:
    """pydantic's location as OpenAI names a field: tools[0].function.parameters."""
    out = ""
    for part in loc:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "tools"


def _mode(choice: Any) -> Mode:
    if choice == "required" or choice == "none":
        return choice  # type: ignore[no-any-return]
    return "named" if isinstance(choice, dict) or hasattr(choice, "function") else "auto"


@dataclass(frozen=True)
class ToolSession:
    """One request's tools: the constraint on its output, and its readers."""

    request: Any  # vLLM's ChatCompletionRequest, adjusted by the parser
    parser_cls: Any
    tokenizer: Any
    mode: Mode
    structured: Any  # vLLM StructuredOutputsParams for the forced modes, else None
    skip_special_tokens: bool  # False where the parser reads special tokens (hermes' <tool_call>)
    reasoning: bool = False  # a reasoning parser splits the thinking off: every answer is read

    def reader(self, prompt_ids: list[int]) -> ToolReader | None:
        """A reader for one choice's output; None with tool_choice "none" and no reasoning parser
        (the text is the answer)."""
        if self.mode == "none" and not self.reasoning:
            return None
        return ToolReader(self, prompt_ids)

    def readers(self, prompts: list[list[int]], n: int) -> dict[int, ToolReader] | None:
        """A reader per choice (`prompt_index * n + sample_index`); None where `reader` is.

        Made with the prompts, on the tokenizer's thread: a parser may read the tokenizer as it starts."""
        if self.mode == "none" and not self.reasoning:
            return None
        return {k * n + i: ToolReader(self, ids) for k, ids in enumerate(prompts) for i in range(n)}


class ToolReader:
    """One choice's output through vLLM's parser: content and tool-call pieces, delta by delta."""

    def __init__(self, session: ToolSession, prompt_ids: list[int]):
        from vllm.entrypoints.serve.utils.tool_calls_utils import maybe_filter_parallel_tool_calls

        self._one_call_unless_parallel = maybe_filter_parallel_tool_calls
        self._session = session
        self._parser = session.parser_cls(session.tokenizer, session.request.tools)
        self._prompt_ids: list[int] | None = prompt_ids  # given once: the parser checks it on its first delta
        self._ids: dict[int, str] = {}  # the call's index -> its OpenAI id
        self.called = False
        self._thinking = False  # a reasoning parser reads this output, and the prompt left the thinking open
        self._output_ids: list[int] = []  # read with a reasoning parser: for the count of its tokens

    def feed(self, text: str, token_ids: Sequence[int], finished: bool) -> tuple[str, list[ToolCallPiece]]:
        """The content and tool-call pieces in this much more output (`finished`: the last of it)."""
        _, content, pieces = self.read(text, token_ids, finished)
        return content, pieces

    def read(self, text: str, token_ids: Sequence[int], finished: bool) -> tuple[str, str, list[ToolCallPiece]]:
        """The reasoning, content and tool-call pieces in this much more output."""
        request = self._session.request
        if self._session.reasoning:
            if self._prompt_ids is not None:  # a template that turns thinking off closes it in the prompt
                self._thinking = not self._parser.is_reasoning_end(self._prompt_ids)
            self._output_ids.extend(token_ids)
        message = self._parser.parse_delta(
            text, list(token_ids), request, prompt_token_ids=self._prompt_ids, finished=finished
        )
        self._prompt_ids = None
        if message is None:
            return "", "", []
        message = self._one_call_unless_parallel(message, request)
        pieces = [self._piece(call) for call in message.tool_calls or []]
        return message.reasoning or "", message.content or "", [p for p in pieces if p is not None]

    @property
    def reasoning_tokens(self) -> int:
        """The output tokens of the thinking, its markers not counted (as vLLM counts them): those
        before the parser's end token, whose start may be in the prompt (R1-distills' templates put
        it there); for a parser without one, as it counts them."""
        if not self._thinking:
            return 0
        ids = self._output_ids
        parser = self._parser.reasoning_parser
        end = getattr(parser, "end_token_id", None)
        if end is None:
            return int(self._parser.count_reasoning_tokens(ids))
        thought = ids[: ids.index(end)] if end in ids else ids
        return len(thought) - sum(t == getattr(parser, "start_token_id", None) for t in thought)

    def _piece(self, call: Any) -> ToolCallPiece | None:
        function = call.function
        name = getattr(function, "name", None) if function is not None else None
        arguments = (getattr(function, "arguments", None) if function is not None else None) or ""
        piece = ToolCallPiece(index=call.index, arguments=arguments)
        if call.index not in self._ids:
            if not name:
                return None  # arguments before a name: no parser sends them; nothing a client could place
            # OpenAI's ids; vLLM's own ("chatcmpl-tool-...") mean nothing to a client's history.
            self._ids[call.index] = f"call_{uuid.uuid4().hex[:24]}"
            piece["id"] = self._ids[call.index]
            piece["name"] = name
            self.called = True
        elif not arguments:
            return None
        return piece

    def finish_reason(self, reason: str | None) -> str | None:
        """OpenAI's: "tool_calls" when the model called tools ("required" or "auto") and stopped by
        itself; a named function's call ends with "stop", as OpenAI's and vLLM's do."""
        if reason == "stop" and self.called and self._session.mode != "named":
            return "tool_calls"
        return reason


_TOOLS_NOTE = "You can call these functions. A call is a JSON object with the function's name and its arguments:\n"


def chat_template_input(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, tool_choice: Any, *, takes_tools: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, tools) as a request's chat template gets them (`template_messages`); with
    tool_choice "none" a template that takes no tools gets no note about them either. The engine's
    prompt and the gateway's count of it (`orchestrator.scheduling.tokens`) both come from here."""
    shown = tools if tools and (takes_tools or tool_choice != "none") else None
    return template_messages(messages, shown, takes_tools=takes_tools)


def template_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, *, takes_tools: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, tools) for a chat template.

    A template that takes `tools` gets them, and earlier calls' arguments as objects (as
    Transformers' tool templates want them; a string that isn't JSON stays a string). One that
    takes none would drop them silently: the tools become a system note, and an assistant's
    calls their JSON in its content, so the model still sees what it may call and what it did.
    """
    if takes_tools:
        return [_arguments_as_objects(m) for m in messages], list(tools or [])
    out = [_calls_as_text(m) for m in messages]
    if tools:
        note = _TOOLS_NOTE + "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
        if out and out[0].get("role") in ("system", "developer"):
            out[0] = {**out[0], "content": f"{out[0].get('content') or ''}\n\n{note}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out, []


def _arguments_as_objects(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return message
    converted = []
    for call in calls:
        function = dict(call.get("function") or {})
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                function["arguments"] = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                pass
        converted.append({**call, "function": function})
    return {**message, "tool_calls": converted}


def _calls_as_text(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return message
    text = "\n".join(
        json.dumps({"name": f.get("name"), "arguments": f.get("arguments")}, ensure_ascii=False)
        for f in (c.get("function") or {} for c in _arguments_as_objects(message)["tool_calls"])
    )
    content = message.get("content") or ""
    rest = {k: v for k, v in message.items() if k != "tool_calls"}
    return {**rest, "content": f"{content}\n{text}" if content else text}
