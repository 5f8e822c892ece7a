"""Topic name and topic filter rules (MQTT 3.1.1 section 4.7), shared by codec and broker.

The decoder applies them to every PUBLISH, will topic, SUBSCRIBE and UNSUBSCRIBE; the
broker's topic trie calls them for topics it builds itself, so both sides agree on what
a legal topic is. Each check scans the string a handful of times with C-level ``in`` /
``find`` / ``split``; none loops over characters in Python.
"""
from mqttd.codec.errors import ProtocolError

# A str of at most this many code points cannot exceed 65535 UTF-8 bytes (4 bytes each),
# so the costly encode for the length check is needed only for longer strings.
_SAFE_CHARS = 65535 // 4


def _check_common(topic, what):
    if not topic:
        raise ProtocolError(f"{what} is empty [MQTT-4.7.3-1]")
    if "\x00" in topic:
        raise ProtocolError(f"{what} contains U+0000 [MQTT-4.7.3-2]")
    if len(topic) > _SAFE_CHARS and len(topic.encode("utf-8", "surrogatepass")) > 65535:
        raise ProtocolError(f"{what} is longer than 65535 UTF-8 bytes [MQTT-4.7.3-3]")


def check_topic_name(topic, what="topic name"):
    """Raise ProtocolError unless ``topic`` may be published to.

    ``what`` names the field in the reason ("PUBLISH topic", "will topic", ...).
    """
    _check_common(topic, what)
    if "+" in topic or "#" in topic:
        raise ProtocolError(f"{what} contains wildcard [MQTT-3.3.2-2]")


def check_topic_filter(topic_filter, what="topic filter"):
    """Raise ProtocolError unless ``topic_filter`` is a legal subscription filter.

    '#' only as the whole last level [MQTT-4.7.1-2]; '+' only as a whole level
    [MQTT-4.7.1-3].
    """
    _check_common(topic_filter, what)
    hash_at = topic_filter.find("#")
    if hash_at != -1:
        last = len(topic_filter) - 1
        if hash_at != last or (last and topic_filter[last - 1] != "/"):
            raise ProtocolError(
                f"{what} uses '#' other than as the whole last level [MQTT-4.7.1-2]")
    if "+" in topic_filter:
        for level in topic_filter.split("/"):
            if level != "+" and "+" in level:
                raise ProtocolError(
                    f"{what} uses '+' other than as a whole level [MQTT-4.7.1-3]")
