"""After start-up, the engine's objects are out of the garbage collector's walks."""

from __future__ import annotations

import gc

from recomatrix.heap import freeze_startup_heap


class State:
    def __init__(self, n: int) -> None:
        self.n = n


def test_objects_alive_at_freeze_are_no_longer_walked_by_collections() -> None:
    startup_state = [State(n) for n in range(1000)]
    try:
        assert freeze_startup_heap() >= len(startup_state)
        walked = {id(o) for o in gc.get_objects()}
        assert not any(id(d) in walked for d in startup_state)
        later = [State(-1)]
        assert id(later[0]) in {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
