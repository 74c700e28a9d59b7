"""Anthropic's content blocks and tools, inbound: which have an OpenAI translation, and what it is.

The Messages API's unions are open-ended (documents, search results, server
tools, their result blocks, and more with each release), and an Anthropic
route gets the client's own body (`protocol.Native`), so the gateway must not
refuse a block only because it has no model of it: blocks and sources it
doesn't know are kept as they came (`OtherBlock`, `OtherSource`, `ServerTool`).

Other routes (OpenAI-compatible, the local model) get a translation, and
only what translates faithfully is translated (`Parts`):

- text; an image from base64 data or a URL (an `image_url` part);
- a plain-text document (`source.type` "text", or "content" made of text
  and images) and a `search_result`: the text the model sees, headed by the
  title (and the document's `context`, the search result's `source`).

The rest has no translation: a PDF (base64 or URL), a file from the Files API
(`source.type` "file"), citations asked for (`citations.enabled`: the answer
would cite the document), server tools (`web_search_20250305`, `bash_…`,
every tool whose `type` isn't "custom") and blocks the gateway doesn't know
(`server_tool_use`, `web_search_tool_result`, …). Each is recorded, naming
its field (`Parts.untranslated`), never dropped silently: the chat request
then needs an Anthropic route (`capabilities.chat_needs`), and a model with
none answers a 400 that names the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow")


def _tagged(known: frozenset[str], kind: str, aliases: dict[str, str] | None = None) -> Callable[[Any], str]:
    """The tag of a union member by its `type`; "other-…" for a type the gateway doesn't know. (Tags hold
    a '-', so an error's field path leaves them out: `frontdoors.openai.validation_error`.)"""

    def tag(value: Any) -> str:
        kind_of = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if not isinstance(kind_of, str):  # `{"type": {...}}`: no type a member has (and unhashable: no lookup)
            return f"other-{kind}"
        kind_of = (aliases or {}).get(kind_of, kind_of)
        return f"{kind_of}-{kind}" if kind_of in known else f"other-{kind}"

    return tag


# --------------------------------------------------------------------------- sources


class Base64Source(_Wire):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(_Wire):
    type: Literal["url"]
    url: str


class PlainTextSource(_Wire):
    type: Literal["text"]
    data: str


class OtherSource(_Wire):
    """A source with no translation (`file`, and any the API adds)."""

    type: str


ImageSource = Annotated[
    Union[
        Annotated[Base64Source, Tag("base64-source")],
        Annotated[URLSource, Tag("url-source")],
        Annotated[OtherSource, Tag("other-source")],
    ],
    Discriminator(_tagged(frozenset({"base64", "url"}), "source")),
]

# --------------------------------------------------------------------------- blocks


class Citations(_Wire):
    enabled: bool | None = None


class TextBlock(_Wire):
    type: Literal["text"]
    text: str


class ImageBlock(_Wire):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(_Wire):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ThinkingBlock(_Wire):
    type: Literal["thinking", "redacted_thinking"]


class SearchResultBlock(_Wire):
    type: Literal["search_result"]
    source: str
    title: str
    content: list[TextBlock]
    citations: Citations | None = None


class OtherBlock(_Wire):
    """A block the gateway doesn't know (`server_tool_use`, `web_search_tool_result`, …): no translation."""

    type: str


class ContentSource(_Wire):
    """A document made of blocks."""

    type: Literal["content"]
    content: str | list[Block]


class DocumentBlock(_Wire):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: Citations | None = None


class ToolResultBlock(_Wire):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Block] | None = None
    is_error: bool | None = None


DocumentSource = Annotated[
    Union[
        Annotated[Base64Source, Tag("base64-source")],
        Annotated[URLSource, Tag("url-source")],
        Annotated[PlainTextSource, Tag("text-source")],
        Annotated[ContentSource, Tag("content-source")],
        Annotated[OtherSource, Tag("other-source")],
    ],
    Discriminator(_tagged(frozenset({"base64", "url", "text", "content"}), "source")),
]
_BLOCK_TYPES = frozenset({"text", "image", "document", "search_result", "tool_use", "tool_result", "thinking"})
Block = Annotated[
    Union[
        Annotated[TextBlock, Tag("text-block")],
        Annotated[ImageBlock, Tag("image-block")],
        Annotated[DocumentBlock, Tag("document-block")],
        Annotated[SearchResultBlock, Tag("search_result-block")],
        Annotated[ToolUseBlock, Tag("tool_use-block")],
        Annotated[ToolResultBlock, Tag("tool_result-block")],
        Annotated[ThinkingBlock, Tag("thinking-block")],
        Annotated[OtherBlock, Tag("other-block")],
    ],
    Discriminator(_tagged(_BLOCK_TYPES, "block", {"redacted_thinking": "thinking"})),
]
ContentSource.model_rebuild()
DocumentBlock.model_rebuild()
ToolResultBlock.model_rebuild()

# --------------------------------------------------------------------------- tools


class ToolDef(_Wire):
    """A tool the client runs, described by its JSON schema (`type` "custom", or none)."""

    type: Literal["custom"] | None = None
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    input_schema: dict[str, Any]


class ServerTool(_Wire):
    """One of Anthropic's own tools (`web_search_20250305`, `bash_20250124`, …): no translation."""

    type: str
    name: str


def _tool_tag(value: Any) -> str:
    """A tool without a `type` is a custom one (its schema is required)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom-tool" if kind in (None, "custom") else "other-tool"


Tool = Annotated[
    Union[Annotated[ToolDef, Tag("custom-tool")], Annotated[ServerTool, Tag("other-tool")]], Discriminator(_tool_tag)
]

# --------------------------------------------------------------------------- translation


class Parts:
    """Blocks -> OpenAI content parts, and, naming each field, what has no translation (`untranslated`)."""

    def __init__(self) -> None:
        self.untranslated: list[str] = []

    def parts(self, blocks: list[Any], param: str) -> list[dict[str, Any]]:
        """The parts of text, image, document and search-result blocks (other blocks are for the caller)."""
        out: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            out.extend(self.part(block, f"{param}[{j}]"))
        return out

    def part(self, block: Any, param: str) -> list[dict[str, Any]]:
        if isinstance(block, TextBlock):
            return [{"type": "text", "text": block.text}]
        if isinstance(block, ImageBlock):
            return self._image(block, param)
        if isinstance(block, DocumentBlock):
            return self._document(block, param)
        if isinstance(block, SearchResultBlock):
            if self._cited(block.citations, "a search result", param):
                return []
            head = f"{block.title}\n{block.source}"
            return [{"type": "text", "text": "\n\n".join([head, *(b.text for b in block.content)])}]
        self.lose(param, f"a '{block.type}' block")
        return []

    def tool(self, tool: ToolDef | ServerTool, param: str) -> dict[str, Any] | None:
        """OpenAI's function tool for a custom tool; None (and recorded) for a server tool."""
        if isinstance(tool, ServerTool):
            self.lose(param, f"Anthropic's server tool '{tool.type}'")
            return None
        function = {"name": tool.name, "description": tool.description, "parameters": tool.input_schema}
        return {"type": "function", "function": function}

    def lose(self, param: str, what: str) -> None:
        self.untranslated.append(f"'{param}' ({what})")

    def _image(self, block: ImageBlock, param: str) -> list[dict[str, Any]]:
        source = block.source
        if isinstance(source, URLSource):
            return [{"type": "image_url", "image_url": {"url": source.url}}]
        if isinstance(source, Base64Source):
            url = f"data:{source.media_type};base64,{source.data}"
            return [{"type": "image_url", "image_url": {"url": url}}]
        self.lose(param, f"an image from a '{source.type}' source")
        return []

    def _document(self, block: DocumentBlock, param: str) -> list[dict[str, Any]]:
        if self._cited(block.citations, "a document", param):
            return []
        source = block.source
        head = [{"type": "text", "text": t} for t in (block.title, block.context) if t]
        if isinstance(source, PlainTextSource):
            return _joined(head + [{"type": "text", "text": source.data}])
        if isinstance(source, ContentSource):
            if isinstance(source.content, str):
                return _joined(head + [{"type": "text", "text": source.content}])
            return _joined(head + self.parts(source.content, f"{param}.source.content"))
        what = "a PDF" if isinstance(source, Base64Source | URLSource) else f"a '{source.type}' source"
        self.lose(param, f"a document from {what}")
        return []

    def _cited(self, citations: Citations | None, what: str, param: str) -> bool:
        if citations is not None and citations.enabled:
            self.lose(param, f"{what} with citations enabled")
            return True
        return False


def _joined(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Text parts as one, blank lines between (a title, then the text); with images, as they are."""
    if all(p["type"] == "text" for p in parts):
        return [{"type": "text", "text": "\n\n".join(p["text"] for p in parts)}]
    return parts
