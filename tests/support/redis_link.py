"""A stand-in for ``mqttd.cluster.link.RedisLink`` in the cluster's unit tests: every
call is recorded with its Deferred, which the test answers (``answer``/``fail_call``),
and the link goes up (running its ``on_up`` callbacks) and down when the test says.

The Lua itself runs only against a real redis-server (tests/integration/test_cluster*);
these tests hold what the Python around it does with each answer.
"""
from twisted.internet.defer import Deferred, fail

from mqttd.cluster.link import RedisDown

__all__ = ["FakeLink"]


class Call:
    __slots__ = ("name", "keys", "args", "deferred")

    def __init__(self, name, keys, args):
        self.name, self.keys, self.args = name, list(keys), list(args)
        self.deferred = Deferred()

    def __repr__(self):
        return f"<Call {self.name} {self.keys} {self.args}>"


class FakeLink:
    def __init__(self, up=True):
        self.up = up
        self.calls = []
        self._on_up = []

    def on_up(self, callback):
        self._on_up.append(callback)

    def go_up(self):
        self.up = True
        for callback in list(self._on_up):
            callback()

    def go_down(self):
        """The connection is lost: every call in flight fails as txredisapi's do."""
        self.up = False
        for call in self.calls:
            if not call.deferred.called:
                call.deferred.errback(RedisDown("lost"))

    def call(self, *command):
        return self._record(command[0], (), command[1:])

    def script(self, script, keys, args):
        return self._record(script.name, keys, args)

    def _record(self, name, keys, args):
        if not self.up:
            return fail(RedisDown("down"))
        call = Call(name, keys, args)
        self.calls.append(call)
        return call.deferred

    # -- the test's side -------------------------------------------------------------

    def named(self, name):
        return [call for call in self.calls if call.name == name]

    def pending(self, name=None):
        return [call for call in self.calls if not call.deferred.called
                and (name is None or call.name == name)]

    def answer(self, name, value):
        """Answer the oldest call of ``name`` not answered yet."""
        call = self.pending(name)[0]
        call.deferred.callback(value)
        return call

    def answer_all(self, name, value):
        for call in self.pending(name):
            call.deferred.callback(value)
