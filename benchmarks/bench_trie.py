"""Benchmark the subscription trie at 100k subscriptions.

Run: ``.venv/bin/python benchmarks/bench_trie.py [N]``.  Prints build time, matches per
second for random device topics (most hit one exact subscription plus their tenant's
wildcards, some hit nothing), the empty-trie fast path, and tracemalloc bytes per
subscription.  The mix is 90% exact "tenant/T/device/D/telemetry", 10% wildcards.
"""

import random
import sys
import time
import tracemalloc

from mqttd.broker.topics import SubscriptionTrie

TENANTS = 1000


def make_filters(n, rng):
    """(filter, subscriber, qos) triples; subscribers are ints standing in for sessions."""
    out = []
    for i in range(n):
        tenant = rng.randrange(TENANTS)
        r = rng.random()
        if r < 0.90:
            f = f"tenant/{tenant}/device/{i}/telemetry"
        elif r < 0.94:
            f = f"tenant/{tenant}/device/+/telemetry"
        elif r < 0.97:
            f = f"tenant/{tenant}/#"
        elif r < 0.99:
            f = f"tenant/+/device/{i}/#"
        else:
            f = f"tenant/{tenant}/device/+/status"
        out.append((f, i, rng.randrange(3)))
    return out


def make_topics(subs, n, rng):
    """Publish topics: 80% a subscribed device, 20% an unknown device."""
    exact = [f for f, _, _ in subs if "+" not in f and "#" not in f]
    topics = []
    for _ in range(n):
        if rng.random() < 0.8:
            topics.append(rng.choice(exact))
        else:
            topics.append(f"tenant/{rng.randrange(TENANTS)}/device/x{rng.randrange(10**6)}/telemetry")
    return topics


def rate(trie, topics):
    match = trie.match
    t0 = time.perf_counter()
    hits = 0
    for t in topics:
        hits += len(match(t))
    dt = time.perf_counter() - t0
    return len(topics) / dt, hits / len(topics)


def main(n=100_000):
    rng = random.Random(1)
    subs = make_filters(n, rng)
    topics = make_topics(subs, 200_000, rng)

    empty = SubscriptionTrie()
    per_s, _ = rate(empty, topics)
    print(f"empty trie:      {per_s:,.0f} match/s")

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    trie = SubscriptionTrie()
    t0 = time.perf_counter()
    for f, who, qos in subs:
        trie.subscribe(f, who, qos)
    build = time.perf_counter() - t0
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    print(f"build {n:,} subs: {build:.3f} s ({n / build:,.0f} subscribe/s, tracemalloc on)")
    print(f"memory:          {size / n:.0f} B/subscription (filter strings not counted)")

    t0 = time.perf_counter()
    trie2 = SubscriptionTrie()
    for f, who, qos in subs:
        trie2.subscribe(f, who, qos)
    build = time.perf_counter() - t0
    print(f"build {n:,} subs: {build:.3f} s ({n / build:,.0f} subscribe/s)")
    del trie2

    per_s, avg = rate(trie, topics)
    print(f"{n:,} subs:     {per_s:,.0f} match/s (avg {avg:.2f} subscribers per match)")

    exact_only = SubscriptionTrie()
    for f, who, qos in subs:
        if "+" not in f and "#" not in f:
            exact_only.subscribe(f, who, qos)
    per_s, avg = rate(exact_only, topics)
    print(f"exact only:      {per_s:,.0f} match/s (avg {avg:.2f})")

    t0 = time.perf_counter()
    for f, who, _ in subs:
        trie.unsubscribe(f, who)
    print(f"unsubscribe all: {time.perf_counter() - t0:.3f} s; nodes left {trie.node_count()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
