"""The parametrised buffer backend: contract tests take `make_buffer` and run against both."""

import pytest
import ray

from qdistill.actors.redis_buffer import RedisBuffer, RedisSpec
from qdistill.actors.buffer_client import ShardedBuffer
from qdistill.actors.wire import Schema

SCHEMA = Schema(obs_shape=(2,), n_actions=2)


class _Sync:
    """Calls a Ray actor's methods and waits for them: the shard, seen as a plain object."""

    def __init__(self, actor):
        self.actor = actor

    def __getattr__(self, name):
        return lambda *a, **kw: ray.get(getattr(self.actor, name).remote(*a, **kw))


@pytest.fixture(params=["ray", "redis"])
def make_buffer(request):
    made = []

    def make(capacity: int, seed: int = 0, schema: Schema = SCHEMA):
        if request.param == "ray":
            request.getfixturevalue("ray_session")
            actor = ShardedBuffer(1, capacity, seed=seed).shards[0]
            made.append(lambda: ray.kill(actor))
            return _Sync(actor)
        server = request.getfixturevalue("redis_server")
        prefix = request.getfixturevalue("redis_prefix")
        buf = RedisBuffer(RedisSpec(server.url, prefix, capacity, 1, schema), seed=seed)
        made.append(buf.close)
        return buf

    yield make
    for close in made:
        close()


