"""Dynamic batching and the byte budget: merged calls are counted, never timed."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from keras_mergan.serve import PayloadTooLargeError, Sampler
from keras_mergan.serve.app import AppSettings, create_app
from keras_mergan.serve.batching import ByteBudget, DynamicBatcher
from keras_mergan.serve.server import start_in_thread
from test_serve import cached_export

pytestmark = [pytest.mark.backend_independent, pytest.mark.serving]


class Recorder:
    """A stand-in model: ``z * 2``, recording the rows of every call."""

    def __init__(self, fail_on: int | None = None):
        self.calls: list[int] = []
        self.fail_on = fail_on

    def __call__(self, z, labels):
        self.calls.append(len(z))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("model failed")
        return z * 2 + labels[:, None]


def _requests(batcher, sizes):
    async def run():
        return await asyncio.gather(
            *(
                batcher.generate(
                    np.full((n, 2), i, np.float32), np.full(n, i, np.int64)
                )
                for i, n in enumerate(sizes)
            ),
            return_exceptions=True,
        )

    return asyncio.run(run())


def test_concurrent_requests_share_one_call():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=64)
    results = _requests(batcher, [1, 3, 2, 5])
    assert model.calls == [11]
    assert batcher.calls == 1 and batcher.requests == 4
    for i, (result, n) in enumerate(zip(results, [1, 3, 2, 5], strict=True)):
        np.testing.assert_array_equal(result, np.full((n, 2), 3 * i))


def test_batches_are_bounded_and_whole():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=4)
    results = _requests(batcher, [1, 1, 1, 1, 1, 1, 3, 6, 2])
    # Requests are never split; one larger than max_batch runs alone.
    assert model.calls == [4, 2, 3, 6, 2]
    assert [len(r) for r in results] == [1, 1, 1, 1, 1, 1, 3, 6, 2]


def test_a_failed_call_fails_only_its_requests():
    model = Recorder(fail_on=1)
    batcher = DynamicBatcher(model, max_batch=2)
    results = _requests(batcher, [1, 1, 1])
    assert [isinstance(r, RuntimeError) for r in results] == [True, True, False]
    np.testing.assert_array_equal(results[2], np.full((1, 2), 6))


def test_a_cancelled_request_is_left_out():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=64)

    async def run():
        keep = asyncio.ensure_future(
            batcher.generate(np.ones((2, 2), np.float32), np.zeros(2, np.int64))
        )
        leave = asyncio.ensure_future(
            batcher.generate(np.ones((5, 2), np.float32), np.zeros(5, np.int64))
        )
        await asyncio.sleep(0)  # both queued
        leave.cancel()
        return await keep

    assert asyncio.run(run()).shape == (2, 2)
    assert model.calls == [2]


def test_byte_budget_queues_in_order_and_refuses_the_impossible():
    async def run():
        budget = ByteBudget(1000)
        with pytest.raises(PayloadTooLargeError):
            await budget.acquire(1001)
        first = await budget.acquire(600)
        order = []

        async def take(name, nbytes):
            lease = await budget.acquire(nbytes)
            order.append(name)
            return lease

        big = asyncio.ensure_future(take("big", 600))
        small = asyncio.ensure_future(take("small", 100))
        leaver = asyncio.ensure_future(take("leaver", 50))
        await asyncio.sleep(0)
        # "small" would fit now, but waits behind "big": nobody starves.
        assert order == [] and budget.used == 600
        leaver.cancel()
        first.release()
        first.release()  # idempotent
        big_lease, small_lease = await big, await small
        assert order == ["big", "small"] and budget.used == 700
        big_lease.release()
        small_lease.release()
        return budget.used

    assert asyncio.run(run()) == 0


# --- over HTTP ----------------------------------------------------------------


@pytest.fixture(scope="module")
def export_dir(run_cache):
    return cached_export(run_cache)


def test_concurrent_http_requests_are_merged(export_dir):
    """While one onnxruntime call is held, the other requests queue; they then
    go out in one call, and each gets exactly its own images."""
    app = create_app(export_dir, AppSettings(max_batch=256))
    service = app.state.service
    sampler = service.exports.sampler(2)
    generate = sampler.generate
    release = threading.Event()
    calls = []

    def gated(z, labels):
        calls.append(len(z))
        if len(calls) == 1:
            release.wait(120)
        return generate(z, labels)

    sampler.generate = gated  # the batcher of task 2 is made on first use
    cases = [(i % 2, 1 + i % 3, 100 + i) for i in range(12)]
    infer_body = {
        "inputs": [
            {"name": "z", "shape": [1, 128], "datatype": "FP32", "data": [0.25] * 128},
            {"name": "label", "shape": [1], "datatype": "INT32", "data": [1]},
        ]
    }

    def until(condition):
        for _ in range(12000):  # a bound, not a timing: 2 minutes at most
            if condition():
                return True
            time.sleep(0.01)
        return False

    with start_in_thread(app) as running:

        def fetch(case):
            category, n, seed = case
            url = (
                f"{running.url}/api/samples?task=2&category={category}"
                f"&n={n}&seed={seed}"
            )
            with urllib.request.urlopen(url, timeout=120) as response:
                return np.load(io.BytesIO(response.read()))

        def infer(_):
            request = urllib.request.Request(
                running.url + "/v2/models/generator/versions/2/infer",
                json.dumps(infer_body).encode(),
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["outputs"][0]["data"]

        with ThreadPoolExecutor(len(cases) + 2) as pool:
            first = pool.submit(fetch, cases[0])
            assert until(lambda: len(calls) == 1)  # held inside onnxruntime
            rest = [pool.submit(fetch, case) for case in cases[1:]]
            rest += [pool.submit(infer, i) for i in range(2)]
            batcher = service.batcher(sampler)
            assert until(lambda: batcher.queued == len(rest))
            release.set()
            results = [first.result()] + [future.result() for future in rest]

    assert calls == [cases[0][1], sum(n for _, n, _ in cases[1:]) + 2]
    reference = Sampler(export_dir, 2)
    for (category, n, seed), images in zip(cases, results, strict=False):
        np.testing.assert_array_equal(images, reference.sample(category, n, seed))
    z = np.full((1, 128), 0.25, np.float32)
    for data in results[len(cases) :]:
        np.testing.assert_allclose(
            np.reshape(data, (1, 32, 32, 1)), reference.generate(z, [1]), atol=1e-6
        )
