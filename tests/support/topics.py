"""The MQTT 3.1.1 section 4.7 topic-matching oracle and its table of cases, shared by
the subscription trie's and the retained store's tests: both must match exactly as
the standard says, so they are checked against the same reference.
"""


def reference_match(topic_filter, topic):
    """Obvious, slow matcher straight from section 4.7, used as the oracle."""
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    if topic.startswith("$") and flevels[0] in ("+", "#"):
        return False
    for i, level in enumerate(flevels):
        if level == "#":
            return True  # also matches the parent level: len(tlevels) == i
        if i >= len(tlevels):
            return False
        if level != "+" and level != tlevels[i]:
            return False
    return len(flevels) == len(tlevels)


# (filter, topic, matches) -- the examples of MQTT 3.1.1 section 4.7, plus edges.
SPEC_CASES = [
    # 4.7.1.2 multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis", False),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    ("sport/#", "sport", True),
    ("sport/#", "sport/", True),
    ("sport/#", "sports", False),
    ("#", "sport", True),
    ("#", "sport/tennis/player1", True),
    ("#", "/", True),
    # 4.7.1.3 single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+", "sport", True),
    ("+", "sport/tennis", False),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("+/tennis/#", "sport/tennis", True),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player2", False),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/#", "sport", True),
    # 4.7.2 topics beginning with $
    ("#", "$SYS/monitor/Clients", False),
    ("#", "$SYS", False),
    ("+", "$SYS", False),
    ("+/#", "$SYS/monitor", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/+/Clients", "$SYS/monitor/Clients", True),
    ("a/+", "a/$b", True),  # only the first level is special
    ("a/#", "a/$b/c", True),
    # 4.7.3 case-sensitive, spaces are ordinary characters, empty levels
    ("ACCOUNTS", "Accounts", False),
    ("Accounts payable", "Accounts payable", True),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/b", "a//b", False),
    ("a//+", "a//", True),
    ("+/+/+", "//", True),
    ("/", "/", True),
    ("+", "", True),
]
