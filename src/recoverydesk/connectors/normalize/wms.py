"""The generic 3PL/WMS connector: the warehouse posts canonical events (one object or a list).

There is no vendor shape to translate: each event is validated as it stands, and its ``source``
must be ``wms`` (it is filled in when absent), so a warehouse cannot speak for a PSP or a shop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import Normalized, as_map
from recoverydesk.domain.errors import InvalidEvent


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    items = payload if isinstance(payload, list) else [payload]
    events: list[dict[str, Any]] = []
    for index, raw in enumerate(items):
        item = dict(as_map(raw, f"wms event {index}"))
        source = item.setdefault("source", "wms")
        if source != "wms":
            raise InvalidEvent(f"wms event {index}: source must be 'wms', got {source!r}")
        events.append(item)
    if not events:
        raise InvalidEvent("wms payload: no events")
    return Normalized(events=events)
