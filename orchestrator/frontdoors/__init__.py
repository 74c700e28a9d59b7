"""Front doors: the inbound protocols, mirror images of the outbound providers.

Each module is one wire format. It parses a request body into the internal
`Call` the flow answers (`FrontDoor.parse`), encodes the answer back as JSON
or as a stream of its own events (`encode`), and says any error in its own
shape (`error`). A new client protocol is a new module here and a line in
`orchestrator.api`; nothing else changes.

    base.py               the seams (`FrontDoor`; `SideDoor`, a route answered without a model)
    openai.py             OpenAI's wire format: POST /v1/chat/completions, /v1/completions, /v1/embeddings
    anthropic.py          Anthropic's Messages API: POST /v1/messages over the chat flow, and
                          /v1/messages/count_tokens (a side door)
    anthropic_request.py  its requests: validated, anthropic-version checked, translated to chat

One module per wire format, as `orchestrator/providers/` has one per upstream API.
"""
