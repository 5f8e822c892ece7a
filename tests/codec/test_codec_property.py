"""Property tests of the codec: fuzzed input only ever raises ProtocolError and stays
within the memory bound; valid packet streams survive encode -> any chunking -> parse."""
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mqttd.codec import (
    Connack,
    Connect,
    Disconnect,
    Parser,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
)

SETTINGS = settings(max_examples=250, deadline=None)

# Strings as MQTT allows them: no surrogates (not encodable), no U+0000.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=20)
level = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#/"),
                max_size=8)
topic_name = st.lists(level, min_size=1, max_size=5).map("/".join).filter(bool)
topic_filter = st.builds(
    lambda levels, hash_tail: "/".join(levels + ["#"] if hash_tail else levels),
    st.lists(st.one_of(level, st.just("+")), min_size=1, max_size=5),
    st.booleans(),
).filter(bool)
packet_id = st.integers(1, 65535)
payload = st.binary(max_size=300)


@st.composite
def connects(draw):
    level_name = draw(st.sampled_from([("MQTT", 4), ("MQIsdp", 3)]))
    clean = draw(st.booleans())
    client_id = draw(text)
    if not client_id and (not clean or level_name[1] == 3):
        client_id = "c"
    username = draw(st.none() | text)
    password = draw(st.none() | st.binary(max_size=30)) if username is not None else None
    will = draw(st.none() | st.builds(Will, topic_name, payload, st.integers(0, 2),
                                      st.booleans()))
    return Connect(client_id, clean, draw(st.integers(0, 65535)), username, password, will,
                   *level_name)


publishes = st.one_of(
    st.builds(Publish, topic_name, payload, st.just(0), st.booleans(), st.just(False),
              st.just(None)),
    st.builds(Publish, topic_name, payload, st.integers(1, 2), st.booleans(), st.booleans(),
              packet_id),
)
acks = st.one_of(*(st.builds(cls, packet_id) for cls in (Puback, Pubrec, Pubrel, Pubcomp)))
from_client = st.one_of(
    publishes, acks,
    st.builds(Subscribe, packet_id,
              st.lists(st.tuples(topic_filter, st.integers(0, 2)), min_size=1,
                       max_size=4).map(tuple)),
    st.builds(Unsubscribe, packet_id, st.lists(topic_filter, min_size=1, max_size=4).map(tuple)),
    st.just(Pingreq()), st.just(Disconnect()),
)
from_server = st.one_of(
    publishes, acks,
    st.one_of(st.builds(Connack, st.just(True), st.just(0)),
              st.builds(Connack, st.just(False), st.integers(0, 5))),
    st.builds(Suback, packet_id,
              st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=5).map(tuple)),
    st.builds(Unsuback, packet_id),
    st.just(Pingresp()),
)


@st.composite
def client_streams(draw):
    """(server, packets): a connection's packets in one direction."""
    if draw(st.booleans()):
        return True, [draw(connects())] + draw(st.lists(from_client, max_size=12))
    return False, draw(st.lists(from_server, max_size=12))


def chunked(data, cuts):
    bounds = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0] + bounds + [len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


class RoundTripProperties(unittest.TestCase):
    @SETTINGS
    @given(client_streams(), st.lists(st.integers(0, 10**6), max_size=40))
    def test_any_chunking_gives_back_the_packets(self, stream, cuts):
        server, packets = stream
        wire = b"".join(encode(p) for p in packets)
        parser = Parser(server=server)
        got = []
        for chunk in chunked(wire, cuts):
            got += parser.feed(chunk)
        self.assertEqual(got, packets)
        self.assertEqual(parser.buffered, 0)


class FuzzProperties(unittest.TestCase):
    def assertOnlyProtocolError(self, parser, chunks):
        limit = parser.max_packet_size + 5
        try:
            for chunk in chunks:
                parser.feed(chunk)
                self.assertLessEqual(parser.buffered, limit)
        except ProtocolError as e:
            self.assertIsInstance(e.reason, str)
            self.assertRaises(ProtocolError, parser.feed, b"\xc0\x00")

    @SETTINGS
    @given(st.binary(max_size=600), st.lists(st.integers(0, 10**6), max_size=30),
           st.booleans(), st.integers(2, 400), st.booleans())
    def test_random_bytes(self, data, cuts, server, max_size, connected):
        prefix = encode(Connect("fuzz")) if server and connected else b""
        parser = Parser(max_packet_size=max(max_size, len(prefix)), server=server)
        self.assertOnlyProtocolError(parser, chunked(prefix + data, cuts))

    @SETTINGS
    @given(client_streams(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                      min_size=1, max_size=6),
           st.lists(st.integers(0, 10**6), max_size=20), st.integers(2, 2000))
    def test_mutated_valid_streams(self, stream, flips, cuts, max_size):
        """Corrupting a few bytes of a valid stream reaches deep into every decoder."""
        server, packets = stream
        wire = bytearray(b"".join(encode(p) for p in packets))
        if wire:
            for where, value in flips:
                wire[where % len(wire)] = value
        parser = Parser(max_packet_size=max_size, server=server)
        self.assertOnlyProtocolError(parser, chunked(bytes(wire), cuts))
