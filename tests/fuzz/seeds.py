#!/usr/bin/env python3
"""seeds.py - writes the hand-made seed corpus of the fuzz target into
tests/fuzz/corpus/: one input per area, every opcode of ops.c used by at
least one. An input is a config byte, then operations of an opcode byte
and three argument bytes (see the enum in ops.c for what each byte means).
Run it again after changing the opcodes: `python3 tests/fuzz/seeds.py`."""
import os

(PAGES_ALLOC, PAGES_FREE, CACHE_CREATE, CACHE_ALLOC, CACHE_FREE, CACHE_DESTROY, ALLOC, FREE, MALLOC, REALLOC,
 POOL_CREATE, POOL_ALLOC, POOL_FREE, POOL_RESIZE, POOL_DESTROY, RESERVE, UNRESERVE, TASK_CREATE, TASK_ENTER,
 TASK_LEAVE, TASK_DESTROY, SHRINKER_REGISTER, SHRINKER_UNREGISTER, STASH, RECLAIM, SCOPE_SAVE, SCOPE_RESTORE,
 DRAIN, TRIM, CHECK_ALL) = range(30)

# Flag selectors of ops.c's flag_table (low 3 bits), 8 adds NF_ZERO.
NOWAIT, MAYFAIL, NOWAIT_HIGH, MAYFAIL_MEMALLOC, NOWAIT_NOMEMALLOC, BLOCKING, NOWAIT_MEMALLOC, HIGH = range(8)
ZERO = 8


def op(code, a0=0, a1=0, a2=0):
    return bytes([code, a0 & 0xff, a1 & 0xff, a2 & 0xff])


def pages_alloc(order, flags):
    return op(PAGES_ALLOC, order | flags << 2)


SEEDS = {
    # Every order and flag in the pages domain, frees, a drain and a trim.
    "pages": bytes([0]) + b"".join(pages_alloc(o, f) for o in range(4) for f in (NOWAIT, BLOCKING | ZERO, MAYFAIL))
    + op(PAGES_FREE, 3) + op(PAGES_FREE, 0) + op(DRAIN, 0) + op(TRIM, 0) + op(CHECK_ALL),
    # The pages domain filled until NF_NOWAIT fails, then half given back.
    "pages-full": bytes([0]) + pages_alloc(3, NOWAIT) * 10 + pages_alloc(0, NOWAIT_MEMALLOC) * 8
    + op(PAGES_FREE, 1) * 5 + pages_alloc(1, NOWAIT_HIGH) * 2,
    # Caches of several sizes and alignments, objects for the shrinker, reclaim, destroy.
    "caches": bytes([0x04]) + op(CACHE_CREATE, 0, 10, 0) + op(CACHE_CREATE, 1, 200, 3) + op(CACHE_CREATE, 2, 40, 5)
    + op(CACHE_ALLOC, 0, BLOCKING) + op(CACHE_ALLOC, 0, NOWAIT | ZERO, 1) + op(CACHE_ALLOC, 1, MAYFAIL, 1)
    + op(CACHE_ALLOC, 2, NOWAIT_HIGH) + op(SHRINKER_REGISTER, 9) + op(STASH, 0) + op(RECLAIM, 8)
    + op(CACHE_FREE, 0) + op(CACHE_DESTROY, 1) + op(SHRINKER_UNREGISTER) + op(CACHE_ALLOC, 0, MAYFAIL_MEMALLOC),
    # The malloc family on the default domain, nf_alloc on the objects domain.
    "malloc": bytes([0x08]) + op(MALLOC, 0, 100, 0) + op(MALLOC, 1 | 1 << 2, 7, 3) + op(MALLOC, 2 | 2 << 2, 12, 1)
    + op(MALLOC, 3 | 3 << 2 | 0x80, 2, 0) + op(REALLOC, 0, 0, 40) + op(REALLOC, 1 << 6, 50, 0)
    + op(ALLOC, NOWAIT, 64) + op(ALLOC, BLOCKING | ZERO | 1 << 4, 0, 8) + op(ALLOC, MAYFAIL | 3 << 4, 3, 0)
    + op(FREE, 0) + op(FREE, 1) + op(REALLOC, 0, 0, 0),
    # Pools of each kind: allocations, a bulk one, frees, resizing, destroying.
    "pools": bytes([0x10]) + op(CACHE_CREATE, 0, 30, 0) + op(POOL_CREATE, 0 | 0 << 2, 3 | 1 << 3)
    + op(POOL_CREATE, 1 | 1 << 2, 4, 0) + op(POOL_CREATE, 2 | 2 << 2, 2, 20) + op(POOL_CREATE, 3 | 3 << 2, 5, 7)
    + op(POOL_ALLOC, 0, 0) + op(POOL_ALLOC, 0, 3) + op(POOL_ALLOC, 1, 4 | 1 << 3) + op(POOL_ALLOC, 2, 2)
    + op(POOL_ALLOC, 3, 1) + op(POOL_FREE, 0) + op(POOL_RESIZE, 0, 6) + op(POOL_RESIZE, 1, 0)
    + op(POOL_DESTROY, 2) + op(CACHE_DESTROY, 0) + op(POOL_ALLOC, 0, 0) * 4,
    # Reservations of the thread's own task: pages spent from tokens, a refusal, unreserve.
    "reserve": bytes([0x01]) + op(RESERVE, 0, 20) + pages_alloc(0, NOWAIT) * 3 + pages_alloc(2, MAYFAIL)
    + op(RESERVE, 0 | 4, 0xff, 0x0f) + op(RESERVE, 2 | 8, 10) + op(POOL_CREATE, 0, 2) + op(POOL_ALLOC, 0)
    + op(RESERVE, 1, 30) + op(CACHE_CREATE, 0, 5) + op(CACHE_ALLOC, 0, NOWAIT) + op(DRAIN, 0)
    + pages_alloc(0, NOWAIT) + op(UNRESERVE, 0) + op(UNRESERVE, 2),
    # Tasks: charges, reservations that travel with them, nesting, destroy with pages out.
    "tasks": bytes([0x05]) + op(TASK_CREATE, 0, 125) + op(TASK_CREATE, 1, 250) + op(TASK_ENTER, 0)
    + pages_alloc(1, NOWAIT) + op(RESERVE, 0, 12) + pages_alloc(0, BLOCKING) + op(TASK_ENTER, 1)
    + pages_alloc(0, NOWAIT) + op(TASK_LEAVE) + pages_alloc(2, NOWAIT) + op(TASK_LEAVE) + op(PAGES_FREE, 0)
    + op(TASK_DESTROY, 0) + op(TASK_ENTER, 1) + op(UNRESERVE, 0) + op(TASK_LEAVE) + op(TASK_DESTROY, 1),
    # Scopes around reclaim and allocation: the shrinker must stay out where told.
    "scopes": bytes([0x04]) + op(CACHE_CREATE, 0, 100) + op(SHRINKER_REGISTER, 1) + op(CACHE_ALLOC, 0, NOWAIT, 1) * 4
    + op(SCOPE_SAVE, 2) + op(RECLAIM, 4) + op(SCOPE_SAVE, 1) + op(CACHE_ALLOC, 0, BLOCKING) + op(SCOPE_SAVE, 7)
    + op(SCOPE_RESTORE) + op(SCOPE_RESTORE) + op(SCOPE_RESTORE) + op(RECLAIM, 2) + op(TRIM, 1) + op(DRAIN, 3),
    # Found a bug: a 1088-page domain (thread lists), a grant of 544 pages, ordinary pages taken by a task,
    # a token-paid list refill, a drain, the task taking what it can, then the holder's whole grant.
    "reserve-drain": bytes([0x02]) + op(RESERVE, 0, 31, 2) + op(TASK_CREATE, 0, 125) + op(TASK_ENTER, 0)
    + pages_alloc(3, NOWAIT) * 63 + pages_alloc(0, NOWAIT) * 10 + op(TASK_LEAVE) + pages_alloc(0, NOWAIT)
    + op(DRAIN, 0) + op(TASK_ENTER, 0) + pages_alloc(0, NOWAIT) * 8 + op(TASK_LEAVE) + pages_alloc(3, NOWAIT) * 67
    + pages_alloc(0, NOWAIT) * 7,
    # Found a bug: tokens in the objects domain while NF_MEMALLOC allocations hold it below min; the holder's
    # new slabs must be ordinary ones.
    "reserve-below-min": bytes([0x04]) + op(RESERVE, 1, 40) + op(TASK_CREATE, 0) + op(TASK_ENTER, 0)
    + op(ALLOC, NOWAIT_MEMALLOC | 3 << 4, 8) * 30 + op(TASK_LEAVE) + op(ALLOC, NOWAIT) * 6
    + op(CACHE_CREATE, 0, 20) + op(CACHE_ALLOC, 0, NOWAIT) * 6,
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    used = {data[i] for data in SEEDS.values() for i in range(1, len(data), 4)}
    missing = sorted(set(range(30)) - used)
    if missing:
        raise SystemExit("seeds.py: opcodes without a seed: %s" % missing)


main()
