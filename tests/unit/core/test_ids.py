"""Request ids stay unique whatever else the process does with ``random``; ledger row ids
sort in the order they were made."""

from __future__ import annotations

import os
import random
import time

from server.core.ids import new_request_id, new_row_id


def test_seeding_the_shared_random_module_does_not_repeat_ids() -> None:
    # Hypothesis seeds `random` for every example it replays; so may any library.
    random.seed(0)
    first = new_request_id()
    random.seed(0)
    assert new_request_id() != first


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    parent = new_request_id()
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 24 and child != parent


def test_row_ids_sort_in_the_order_they_were_made() -> None:
    # The ledger's unique index on row_id takes each new id at its right edge only if ids rise.
    ids = []
    for _ in range(50):
        ids.append(new_row_id())
        time.sleep(0.0001)  # past the clock's resolution, so each id's time part is later
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)


def test_row_ids_of_the_same_instant_differ() -> None:
    ids = {new_row_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_a_row_id_starts_with_the_wall_clock() -> None:
    before = time.time_ns()
    made = int(new_row_id()[:16], 16)
    assert before <= made <= time.time_ns()
