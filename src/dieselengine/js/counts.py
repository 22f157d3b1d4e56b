"""Room member counts for the scripts: one listener per hub, fanned out to its scripts."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..hub import Hub
    from .script import JsScript

#: Room counts a script may have pending before they are pushed into its context unasked.
MAX_DIRTY = 4096


class HubLink:
    """The last known member count of every room, and the JS scripts to tell about changes."""

    def __init__(self, hub: Hub) -> None:
        #: Not redundant with the hub: rooms with members only on other nodes are known here
        #: alone (the Bus protocol cannot list them), and a script loaded later needs their counts.
        self.counts: dict[str, int] = {}
        self.scripts: list[JsScript] = []
        hub.count_listeners.append(self.changed)

    def changed(self, room: str, members: int) -> None:
        if members:
            self.counts[room] = members
        else:
            self.counts.pop(room, None)
        for script in self.scripts:
            # A script learns only of the rooms it has named itself (issue 13: no room list to spy on).
            mirrored = script._mirrored
            if room not in mirrored:
                continue
            if not members:
                mirrored.discard(room)
            dirty = script._dirty
            dirty[room] = members
            script._entry.stale = True
            if len(dirty) == MAX_DIRTY:
                # A script that gets no calls while rooms churn elsewhere: push the counts now
                # rather than let them pile up.
                script._loop.call_soon(script._push_counts)


_links: weakref.WeakKeyDictionary[Any, HubLink] = weakref.WeakKeyDictionary()


def hub_link(hub: Hub) -> HubLink:
    link = _links.get(hub)
    if link is None:
        link = _links[hub] = HubLink(hub)
    return link
