"""A key's share of one gateway replica's places: how many it holds, and at most how many.

Serve gives a Gateway replica `gateway.max_ongoing_requests` places: an HTTP
request holds one from its first byte in to its last byte out (a stream's
until it ends or its client leaves), a WebSocket for as long as it is open.
Past them, requests queue or are refused, whoever sent them: without a share
per key, one key's flood of slow streams or idle sockets took every place, and
every other key waited behind it. `Places` counts what each key holds of one
kind (`Accounts` keeps one for open WebSockets, one for HTTP requests in
progress) and refuses one more past its cap.

Counts live in the replica's memory, on its event loop: nothing awaits between
a check and its count, so two requests at once can't both take a key's last
place. A place is given back exactly once (`Tab.place`), on every path out.
"""

from __future__ import annotations


class Places:
    """How many places each key holds of one kind; none beyond its cap."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}  # only keys holding at least one: as many entries as active keys

    def take(self, key_id: str, cap: int) -> int | None:
        """One more place for `key_id`: None once taken, or how many it holds where that is `cap` already."""
        held = self._held.get(key_id, 0)
        if held >= cap:
            return held
        self._held[key_id] = held + 1
        return None

    def give_back(self, key_id: str) -> None:
        """One of `key_id`'s places free again."""
        left = self._held.get(key_id, 0) - 1
        if left > 0:
            self._held[key_id] = left
        else:
            self._held.pop(key_id, None)

    def held(self, key_id: str) -> int:
        return self._held.get(key_id, 0)

    def __len__(self) -> int:
        """How many keys hold a place now."""
        return len(self._held)
