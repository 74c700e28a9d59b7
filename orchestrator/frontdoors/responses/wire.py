"""The Responses API request (`CreateResponse`) as the gateway serves it.

Function tools (also grouped in a `namespace` tool, as Codex sends its
sub-agent tools), text and image inputs, messages, `function_call` and
`function_call_output` items, structured output and the sampling fields are
served, and the output text's log probabilities (`include:
["message.output_text.logprobs"]`, `top_logprobs`). A `conversation` (an id
or `{"id": …}`) names a stored conversation of the same key (`conversations`),
never together with `previous_response_id` (a 400, as OpenAI's). What no route
can do here is a 400 naming the field: built-in tools (file search, code
interpreter, …; web search only where `tool_choice` forces it: offered, it is
left out and the answer's `x-tools-left-out` header names it), `background`,
stored prompts and file inputs. An `item_reference` names
an item of a stored response of the same key (the door puts that item in its
place; the AI SDK sends its earlier reasoning and messages so when `store` is
on). Fields OpenAI accepts that change nothing here (`include`'s other
values, `service_tier`, `prompt_cache_key`, `safety_identifier`,
`text.verbosity`, `stream_options`) are accepted. `context_management` asks
for server-side compaction (`context_management`): one `compaction` entry, its
`compact_threshold` at least 1,000 tokens or null. What is served is checked on the
request's JSON first (`request_checks`), so that what is not is a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from orchestrator.errors import InvalidRequest
from orchestrator.frontdoors.responses.compaction import DAMAGED, unseal
from orchestrator.frontdoors.responses.request_checks import COMPACTION, check_compact_request, check_request
from orchestrator.protocol import INT64_MAX, Metadata, OutputSchema

LOGPROBS = "message.output_text.logprobs"  # the `include` value that asks for them

# The discriminated unions' tags (input item and content part types): not field names.
TAGS = frozenset(
    {
        "message",
        "function",
        "namespace",
        "function_call",
        "function_call_output",
        "custom",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
        "item_reference",
        "compaction",
        "compaction_summary",
        "compaction_trigger",
        "tool_search",
        "tool_search_call",
        "tool_search_output",
        "input_text",
        "output_text",
        "input_image",
        "refusal",
        "ConversationRef",  # `conversation` as an object: the union member's label (not a field)
    }
)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


class InputText(_Wire):
    type: Literal["input_text", "output_text"]
    text: str


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None

    @model_validator(mode="after")
    def _url(self) -> InputImage:
        if self.image_url is None:
            raise ValueError("this gateway takes images by 'image_url' (a URL or a data URL), not by 'file_id'")
        return self


class Refusal(_Wire):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[InputText | InputImage | Refusal, Field(discriminator="type")]


class FunctionTool(_Wire):
    type: Literal["function"]
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None  # offered once a tool search loads it (`tool_search`)


class NamespaceTool(_Wire):
    """Function tools grouped under a name: the model calls `name` in `namespace` (a call item says both).
    The spec requires its `description`, and `request_checks` refuses a request's tool without one; the model
    leaves it out so that a search's output stored before that still reads."""

    type: Literal["namespace"]
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str | None = None
    tools: Annotated[list[FunctionTool], Field(min_length=1)]


class CustomTool(_Wire):
    """A tool whose input is free-form text, not JSON (`format`: plain text, or a Lark or regex grammar it
    follows): Codex CLI's `apply_patch` for its GPT-5 models. A chat route is offered it as a function of one
    string, `input`, told the grammar in its description (`custom_tools`); the call comes back as a
    `custom_tool_call` with that string as its input."""

    type: Literal["custom"]
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str | None = None
    format: dict[str, Any] | None = None
    defer_loading: bool | None = None


class WebSearchTool(_Wire):
    """OpenAI's hosted web search, offered: left out of what a route is asked (`request_checks.WEB_SEARCH`)."""

    type: Literal["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"]


LoadedTool = Annotated[FunctionTool | NamespaceTool | CustomTool, Field(discriminator="type")]  # a search's find
_CARRIED: TypeAdapter[list[Any]] = TypeAdapter(list[LoadedTool])  # a compaction's (`compaction.Sealed.tools`)


class ToolSearchTool(_Wire):
    """A search over the deferred tools (`defer_loading`), run by the client (Codex CLI offers one for its
    MCP tools: the route is offered it as a function) or by the server (here: the deferred tools are
    offered to the route from the start, and it calls them straight away). See `tool_search`."""

    type: Literal["tool_search"]
    execution: Literal["server", "client"] = "server"
    description: str | None = None
    parameters: dict[str, Any] | None = None


class MessageItem(_Wire):
    """An input message (`EasyInputMessage`, `InputMessage`) or an earlier output message."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(_Wire):
    type: Literal["function_call"]
    call_id: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    arguments: str
    namespace: Annotated[str, Field(min_length=1)] | None = None  # a `namespace` tool's function
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Wire):
    """What a function (or a custom tool: `custom_tool_call_output`) returned, sent back."""

    type: Literal["function_call_output", "custom_tool_call_output"]
    call_id: Annotated[str, Field(min_length=1)]
    output: str | list[Part]
    id: str | None = None
    status: str | None = None


class CustomToolCallItem(_Wire):
    """A call of a custom tool (free-form input: Codex's `apply_patch` is one), sent back."""

    type: Literal["custom_tool_call"]
    call_id: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    input: str
    namespace: Annotated[str, Field(min_length=1)] | None = None
    id: str | None = None
    status: str | None = None


class ReasoningItem(_Wire):
    """An earlier reasoning item: kept in the history, not sent to a chat route."""

    type: Literal["reasoning"]


class CompactionItem(_Wire):
    """A compaction item (`POST /v1/responses/compact`'s): the conversation before it, summarized.
    Only this gateway's own are read (`compaction.unseal`), all it carries checked (the user's messages made
    anew, the loaded tools as a search's output's); `compaction_summary` is Codex's older name."""

    type: Literal["compaction", "compaction_summary"]
    encrypted_content: Annotated[str, Field(min_length=1)]
    id: str | None = None

    @field_validator("encrypted_content")
    @classmethod
    def _ours(cls, content: str) -> str:
        sealed = unseal(content)  # a ValueError saying whose it is when it isn't ours, or what is damaged
        try:  # the tools it carries, as a search's output has them: a client may seal anything
            _CARRIED.validate_python(sealed.tools)
        except ValidationError:
            raise ValueError(DAMAGED) from None
        return content


class CompactionTrigger(_Wire):
    """The last input item of a request that asks for the conversation compacted, not answered: its
    output is one compaction item (Codex CLI's remote compaction sends it). A request control: not kept."""

    type: Literal["compaction_trigger"]


class ToolSearchCallItem(_Wire):
    """A model's search for deferred tools, sent back (`tool_search`): the route's call of that function."""

    type: Literal["tool_search_call"]
    call_id: Annotated[str, Field(min_length=1)] | None = None  # none for OpenAI's own (server) searches
    execution: Literal["server", "client"] | None = None
    arguments: dict[str, Any] | None = None  # an object (the spec's `EmptyModelParam`): a route's call takes one
    id: str | None = None
    status: str | None = None


class ToolSearchOutputItem(_Wire):
    """What a tool search found: the tools it loaded, offered to the route from then on (`tool_search`)."""

    type: Literal["tool_search_output"]
    call_id: Annotated[str, Field(min_length=1)] | None = None
    execution: Literal["server", "client"] | None = None
    tools: list[LoadedTool]
    id: str | None = None
    status: str | None = None


class ItemReference(_Wire):
    """An item of a stored response, by its id (the door replaces it with the item)."""

    type: Literal["item_reference"]
    id: Annotated[str, Field(min_length=1)]


Item = Annotated[
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | ReasoningItem
    | CompactionItem
    | CompactionTrigger
    | ToolSearchCallItem
    | ToolSearchOutputItem
    | ItemReference,
    Field(discriminator="type"),
]
StoredItem = Annotated[
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | ReasoningItem
    | CompactionItem
    | ToolSearchCallItem
    | ToolSearchOutputItem,
    Field(discriminator="type"),
]


AnyTool = Annotated[
    FunctionTool | NamespaceTool | CustomTool | WebSearchTool | ToolSearchTool, Field(discriminator="type")
]


class FunctionChoice(_Wire):
    type: Literal["function", "custom"]
    name: Annotated[str, Field(min_length=1)]


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    schema_: OutputSchema | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema(self) -> TextFormat:
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise ValueError("a 'json_schema' format needs 'name' and 'schema'")
        return self


class TextParam(_Wire):
    format: TextFormat | None = None


class ReasoningParam(_Wire):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: str | None = None


class ContextManagement(_Wire):
    """An entry of `context_management` (the spec's `ContextManagementParam`): `compaction`, the only type
    OpenAI has, compacts the response's context first once its input crosses `compact_threshold` tokens
    (null: once it no longer fits the model's context; see `context_management`)."""

    type: str
    compact_threshold: Annotated[int, Field(ge=1000, le=INT64_MAX)] | None = None


class ConversationRef(_Wire):
    """`conversation` as an object: `{"id": "conv_…"}`."""

    id: str


def conversation_id(value: str, param: str) -> str:
    """A conversation's id as a client names it, or a 400 in OpenAI's words (its ids begin so)."""
    if not value.startswith("conv"):
        raise InvalidRequest(
            f"Invalid '{param}': '{value[:100]}'. Expected an ID that begins with 'conv'.",
            param=param,
            code="invalid_value",
        )
    return value


class ResponsesRequest(_Wire):
    """`POST /v1/responses`."""

    model: Annotated[str, Field(min_length=1)]
    input: str | Annotated[list[Item], Field(min_length=1)]
    instructions: str | None = None
    previous_response_id: Annotated[str, Field(min_length=1)] | None = None
    conversation: str | ConversationRef | None = None
    tools: list[AnyTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    metadata: Metadata | None = None
    stream: bool = False
    store: bool = True
    user: str | None = None
    reasoning: ReasoningParam | None = None
    truncation: Literal["auto", "disabled"] | None = None
    background: Literal[False] | None = None
    include: list[str] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    context_management: Annotated[list[ContextManagement], Field(min_length=1)] | None = None

    def conversation_id(self) -> str | None:
        """The conversation this response belongs to, by its id."""
        c = self.conversation
        return conversation_id(c if isinstance(c, str) else c.id, "conversation") if c is not None else None

    def left_out(self) -> list[str]:
        """The offered tools no route here runs, by type."""
        return [t.type for t in self.tools or [] if isinstance(t, WebSearchTool)]

    def logprobs(self) -> bool:
        """Whether the output text carries its tokens' log probabilities (`include`, or `top_logprobs`)."""
        return LOGPROBS in (self.include or []) or bool(self.top_logprobs)

    def compaction(self) -> ContextManagement | None:
        """Its server-side compaction (`context_management`), if it asks for one."""
        return next((entry for entry in self.context_management or [] if entry.type == COMPACTION), None)

    @model_validator(mode="before")
    @classmethod
    def _served(cls, data: Any) -> Any:
        """Name what no route here can do before pydantic reports it as a shape error."""
        if isinstance(data, dict):
            check_request(data)
        return data


class TokenCountRequest(ResponsesRequest):
    """`POST /v1/responses/input_tokens`: a Responses request to count, not to answer (`input` may be
    left out where a stored chain or conversation is named; the model, whose tokenizer counts, may not)."""

    input: str | list[Item] = []  # type: ignore[assignment]  # an empty list: nothing of its own


class CompactRequest(_Wire):
    """`POST /v1/responses/compact`: the conversation to compact (its items, after a stored response's
    with `previous_response_id`), and what its turns were asked with (`instructions`, `tools`, …: as
    Codex sends them, so the summary is asked in the same context). Answered whole, never stored."""

    model: Annotated[str, Field(min_length=1)]
    input: str | list[Item] | None = None
    instructions: str | None = None
    previous_response_id: Annotated[str, Field(min_length=1)] | None = None
    tools: list[AnyTool] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningParam | None = None
    text: TextParam | None = None  # the turns' output format: not the summary's
    max_output_tokens: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = None  # this gateway's: the summary's cap

    @model_validator(mode="before")
    @classmethod
    def _served(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_compact_request(data)
        return data
