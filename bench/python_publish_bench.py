"""What the Python host client costs a training loop (docs/client-python.md quotes it).

    PYTHONPATH=build/<preset>/python /usr/bin/python3 bench/python_publish_bench.py [--samples N]

Prints, per line, a measurement and its unit:
- metric() per sample, amortised over batching, encoding and sending (target: <= 5 us), into a
  PULL socket drained by another process, so nothing is dropped;
- the same split in two: the call alone (buffer append) and the flush (encode + send) per sample;
- for comparison, building the same batch with the generated protobuf classes (what the client
  does not do, because it is slower with python3-protobuf 3.21);
- publish() of a small GenerationSummary, per call;
- BreakerWatch.should_stop(), i.e. TrainingGuard.check() when nothing is open.
Best of several rounds, so a noisy neighbour does not decide the number.
"""

import argparse
import multiprocessing
import time

import zmq

from loopwarden.client import BreakerWatch, Publisher
from loopwarden.v1 import common_pb2, envelope_pb2, generation_pb2, metrics_pb2

NAMES = ("train/loss", "train/grad_norm", "train/lr", "eval/accuracy")


def sink(endpoint_queue, stop):
    """Drains a PULL socket until told to stop; reports its endpoint first."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    pull.bind("tcp://127.0.0.1:*")
    endpoint_queue.put(pull.getsockopt(zmq.LAST_ENDPOINT).decode())
    while not stop.is_set():
        if pull.poll(50):
            while True:
                try:
                    pull.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
    pull.close(linger=0)
    context.term()


def best(rounds, run):
    return min(run() for _ in range(rounds))


def bench_metric(endpoint, samples, rounds):
    def run():
        with Publisher(endpoint, "bench/rank0", "bench", sndhwm=0) as publisher:
            metric = publisher.metric
            t0 = time.perf_counter()
            for i in range(samples):
                metric(NAMES[i & 3], i * 0.001, i >> 2)
            publisher.flush()
            elapsed = time.perf_counter() - t0
            assert publisher.dropped == 0, publisher.dropped
        return elapsed / samples * 1e6

    return best(rounds, run)


def bench_split(endpoint, samples, rounds):
    """The call alone (no flush due) and the flush alone, per sample."""
    calls, flushes = [], []
    for _ in range(rounds):
        with Publisher(endpoint, "bench/rank0", "bench", sndhwm=0, max_batch=samples + 1,
                       flush_interval=3600) as publisher:
            metric = publisher.metric
            t0 = time.perf_counter()
            for i in range(samples):
                metric(NAMES[i & 3], i * 0.001, i >> 2)
            t1 = time.perf_counter()
            publisher.max_batch = 256
            publisher.flush()
            t2 = time.perf_counter()
            calls.append((t1 - t0) / samples * 1e6)
            flushes.append((t2 - t1) / samples * 1e6)
    return min(calls), min(flushes)


def bench_protobuf_batch(samples, rounds):
    """Building and serializing 256-sample envelopes with the generated classes."""
    now = time.time_ns()
    items = [(NAMES[i & 3], i * 0.001, i >> 2, now + i) for i in range(256)]
    sample = metrics_pb2.MetricSample
    batches = max(1, samples // 256)

    def run():
        t0 = time.perf_counter()
        for seq in range(batches):
            envelope = envelope_pb2.Envelope(
                schema=common_pb2.SchemaVersion(major=1), source="bench/rank0", run_id="bench",
                seq=seq + 1, time_unix_nano=now)
            envelope.metrics.samples.extend(
                [sample(name=n, value=v, step=s, time_unix_nano=t) for n, v, s, t in items])
            envelope.SerializeToString()
        return (time.perf_counter() - t0) / (batches * 256) * 1e6

    return best(rounds, run)


def bench_publish(endpoint, calls, rounds):
    summary = generation_pb2.GenerationSummary(
        generation=7, sample_count=4096, checkpoint_id="ckpt-7", token_entropy=5.2,
        synthetic_share=0.4, real_share=0.6)
    summary.metrics.add(name="rare_token_ppl", value=25.9)

    def run():
        with Publisher(endpoint, "bench/rank0", "bench", sndhwm=0) as publisher:
            publish = publisher.publish
            t0 = time.perf_counter()
            for _ in range(calls):
                publish(summary)
            elapsed = time.perf_counter() - t0
        return elapsed / calls * 1e6

    return best(rounds, run)


def bench_should_stop(calls, rounds):
    context = zmq.Context()
    watch = BreakerWatch("tcp://127.0.0.1:9", "bench", timeout=3600, context=context)
    try:
        should_stop = watch.should_stop

        def run():
            t0 = time.perf_counter()
            for _ in range(calls):
                should_stop()
            return (time.perf_counter() - t0) / calls * 1e9

        return best(rounds, run)
    finally:
        watch.close()
        context.term()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    endpoints = multiprocessing.Queue()
    stop = multiprocessing.Event()
    drain = multiprocessing.Process(target=sink, args=(endpoints, stop), daemon=True)
    drain.start()
    endpoint = endpoints.get(timeout=10)
    try:
        amortised = bench_metric(endpoint, args.samples, args.rounds)
        call, flush = bench_split(endpoint, args.samples, args.rounds)
        protobuf = bench_protobuf_batch(args.samples, args.rounds)
        publish = bench_publish(endpoint, args.samples // 10, args.rounds)
        check = bench_should_stop(args.samples * 5, args.rounds)
    finally:
        stop.set()
        drain.join(5)

    print(f"metric() amortised (batch 256, encode + send): {amortised:6.2f} us/sample "
          f"(target <= 5)")
    print(f"  metric() call alone (buffer append):          {call:6.2f} us/sample")
    print(f"  flush (encode + send) per sample:              {flush:6.2f} us/sample")
    print(f"  for comparison, generated protobuf classes:    {protobuf:6.2f} us/sample "
          "(build + serialize only, not used)")
    print(f"publish(GenerationSummary):                     {publish:6.2f} us/call")
    print(f"BreakerWatch.should_stop() / guard.check():     {check:6.0f} ns/call")


if __name__ == "__main__":
    main()
