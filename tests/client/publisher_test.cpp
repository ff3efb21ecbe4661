#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <loopwarden/client/publisher.hpp>
#include <loopwarden/version.hpp>
#include <map>

#include "sidecar_side.hpp"

using namespace loopwarden;
using namespace std::chrono_literals;
using client::drop_reason;
using client::publisher;
using client::publisher_options;

namespace {

struct received {
  std::string topic;
  v1::Envelope envelope;
};

// The next ingest message, parsed; fails the test when none arrives within `timeout` (scaled:
// time_scale.hpp) or it is not two frames.
received next_event(zmq::socket_t& pull, std::chrono::milliseconds timeout = 2000ms) {
  auto parts = test::receive(pull, test::scaled(timeout));
  REQUIRE(parts);
  REQUIRE(parts->size() == 2);
  received r;
  r.topic = test::as_string((*parts)[0]);
  REQUIRE(r.envelope.ParseFromArray((*parts)[1].data(), static_cast<int>((*parts)[1].size())));
  return r;
}

std::unique_ptr<publisher> make_publisher(publisher_options options) {
  auto p = publisher::create(std::move(options));
  INFO(p.error().message());
  REQUIRE(p);
  return std::move(p).value();
}

v1::Envelope generation_event() {
  v1::Envelope e;
  e.mutable_generation();
  return e;
}

}  // namespace

TEST_CASE("publisher sends [topic][envelope] with seq 1, 2, 3 and the publisher's stamps",
          "[client][publisher]") {
  const std::string transport = GENERATE("ipc", "tcp");
  INFO("transport " << transport);
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  const std::string endpoint = test::bind_fresh(pull, transport, dir, "ingest");

  auto pub = make_publisher({.endpoint = endpoint,
                             .source = "trainer/rank0",
                             .run_id = "run-7",
                             .labels = {{"host", "gpu-3"}, {"model", "m1"}}});
  v1::Envelope step;
  step.mutable_agent_step()->set_turn(4);
  (*step.mutable_labels())["model"] = "mine";
  CHECK(pub->publish(generation_event()));
  CHECK(pub->publish(step));
  CHECK(pub->heartbeat());

  const std::vector<std::string> topics = {"generation", "agent_step", "heartbeat"};
  for (std::size_t i = 0; i < topics.size(); ++i) {
    INFO("event " << i);
    const received r = next_event(pull);
    CHECK(r.topic == topics[i]);
    CHECK(r.envelope.seq() == i + 1);
    CHECK(r.envelope.source() == "trainer/rank0");
    CHECK(r.envelope.run_id() == "run-7");
    CHECK(r.envelope.schema().major() == sdk::schema_version_major);
    CHECK(r.envelope.schema().minor() == sdk::schema_version_minor);
    CHECK(r.envelope.time_unix_nano() > 0);
    CHECK(r.envelope.labels().at("host") == "gpu-3");
    // The envelope's own label wins over the publisher's.
    CHECK(r.envelope.labels().at("model") == (i == 1 ? "mine" : "m1"));
  }
  CHECK(pub->next_seq() == 4);
  const auto stats = pub->stats();
  CHECK(stats.events_sent == 2);
  CHECK(stats.heartbeats_sent == 1);
  CHECK(stats.dropped() == 0);
}

TEST_CASE("publisher keeps an envelope's own time and run id but always sets its source",
          "[client][publisher]") {
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  auto pub = make_publisher({.endpoint = test::bind_fresh(pull, "ipc", dir, "ingest"),
                             .source = "agent/a",
                             .run_id = "default-run"});
  v1::Envelope e = generation_event();
  e.set_source("someone-else");
  e.set_run_id("run-x");
  e.set_time_unix_nano(12345);
  e.set_seq(99);
  REQUIRE(pub->publish(e));
  const received r = next_event(pull);
  CHECK(r.envelope.source() == "agent/a");
  CHECK(r.envelope.run_id() == "run-x");
  CHECK(r.envelope.time_unix_nano() == 12345);
  CHECK(r.envelope.seq() == 1);
}

TEST_CASE("publisher drops an envelope without a body as invalid and does not use up a seq",
          "[client][publisher]") {
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  auto pub = make_publisher({.endpoint = test::bind_fresh(pull, "ipc", dir, "ingest")});
  CHECK_FALSE(pub->publish(v1::Envelope()));
  CHECK(pub->stats().dropped(drop_reason::invalid) == 1);
  REQUIRE(pub->publish(generation_event()));
  CHECK(next_event(pull).envelope.seq() == 1);
}

TEST_CASE("publisher batches N metric samples into ceil(N / max) batches, in order",
          "[client][publisher]") {
  const std::string transport = GENERATE("ipc", "tcp");
  INFO("transport " << transport);
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  constexpr int max = 7;
  constexpr int n = 50;
  auto pub = make_publisher({.endpoint = test::bind_fresh(pull, transport, dir, "ingest"),
                             .source = "trainer/rank1",
                             .max_batch_samples = max,
                             .flush_interval = 1h});
  for (int i = 0; i < n; ++i) pub->metric(i % 2 ? "train/loss" : "train/lr", i * 0.5, i);
  // Full batches left at once; the last, partial one waits for close.
  CHECK(pub->stats().batches_sent == n / max);
  CHECK(pub->stats().samples_sent == (n / max) * max);
  pub.reset();

  const int batches = static_cast<int>(std::ceil(double(n) / max));
  const std::int64_t wall_now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
  std::int64_t previous_time = 0;
  int next_sample = 0;
  for (int b = 0; b < batches; ++b) {
    INFO("batch " << b);
    const received r = next_event(pull);
    CHECK(r.topic == "metrics");
    REQUIRE(r.envelope.has_metrics());
    CHECK(r.envelope.seq() == static_cast<std::uint64_t>(b + 1));
    CHECK(r.envelope.source() == "trainer/rank1");
    const auto& samples = r.envelope.metrics().samples();
    CHECK(samples.size() == std::min(max, n - b * max));
    for (const auto& s : samples) {
      INFO("sample " << next_sample);
      CHECK(s.name() == (next_sample % 2 ? "train/loss" : "train/lr"));
      CHECK(s.value() == next_sample * 0.5);
      CHECK(s.step() == next_sample);
      // Each sample carries the wall-clock time it was recorded at.
      CHECK(std::abs(s.time_unix_nano() - wall_now) < 10'000'000'000);
      if (next_sample > 0) CHECK(s.time_unix_nano() >= previous_time);
      previous_time = s.time_unix_nano();
      ++next_sample;
    }
  }
  CHECK(next_sample == n);
  // After the batches, only the goodbye: a heartbeat with closing set (sent on destruction).
  const received goodbye = next_event(pull);
  CHECK(goodbye.topic == "heartbeat");
  CHECK(goodbye.envelope.heartbeat().closing());
  CHECK_FALSE(test::receive(pull, 20ms));
}

TEST_CASE("publisher sends a batch older than the flush interval on the next call or tick",
          "[client][publisher]") {
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  auto pub = make_publisher({.endpoint = test::bind_fresh(pull, "ipc", dir, "ingest"),
                             .max_batch_samples = 1000,
                             .flush_interval = 30ms});
  pub->metric("a", 1);
  CHECK_FALSE(test::receive(pull, 5ms));
  std::this_thread::sleep_for(35ms);
  pub->metric("a", 2);  // the batch is now old: this call sends it, with this sample
  auto r = next_event(pull, 500ms);
  CHECK(r.envelope.metrics().samples_size() == 2);

  pub->metric("a", 3);
  std::this_thread::sleep_for(35ms);
  pub->tick();
  r = next_event(pull, 500ms);
  REQUIRE(r.envelope.metrics().samples_size() == 1);
  CHECK(r.envelope.metrics().samples(0).value() == 3);
}

TEST_CASE("publisher flush() sends buffered samples at once, and publish() flushes them first",
          "[client][publisher]") {
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  auto pub = make_publisher({.endpoint = test::bind_fresh(pull, "ipc", dir, "ingest"),
                             .max_batch_samples = 1000,
                             .flush_interval = 1h});
  CHECK(pub->flush());  // nothing buffered: nothing sent
  pub->metric("a", 1);
  pub->metric("b", 2);
  CHECK(pub->flush());
  auto r = next_event(pull);
  CHECK(r.topic == "metrics");
  CHECK(r.envelope.metrics().samples_size() == 2);

  pub->metric("c", 3);
  REQUIRE(pub->publish(generation_event()));
  r = next_event(pull);
  CHECK(r.topic == "metrics");
  CHECK(r.envelope.seq() == 2);
  r = next_event(pull);
  CHECK(r.topic == "generation");
  CHECK(r.envelope.seq() == 3);
}

TEST_CASE("publisher sends heartbeats on schedule with its counters, numbered like events",
          "[client][publisher]") {
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  auto pub = make_publisher(
      {.endpoint = test::bind_fresh(pull, "ipc", dir, "ingest"), .heartbeat_interval = 20ms});
  REQUIRE(pub->publish(generation_event()));
  REQUIRE(pub->publish(generation_event()));
  CHECK_FALSE(pub->publish(v1::Envelope()));  // invalid: not an event, so not reported
  CHECK(next_event(pull).envelope.seq() == 1);
  CHECK(next_event(pull).envelope.seq() == 2);
  pub->tick();  // not due yet
  CHECK_FALSE(test::receive(pull, 5ms));
  std::this_thread::sleep_for(25ms);
  pub->tick();
  const received r = next_event(pull, 500ms);
  CHECK(r.topic == "heartbeat");
  CHECK(r.envelope.seq() == 3);
  CHECK(r.envelope.heartbeat().events_sent() == 2);
  CHECK(r.envelope.heartbeat().events_dropped() == 0);
  CHECK(r.envelope.heartbeat().interval_ms() == 20);
  pub->tick();  // just sent: not due again
  CHECK_FALSE(test::receive(pull, 5ms));
  CHECK(pub->stats().heartbeats_sent == 1);
}

TEST_CASE("publisher without a receiver drops when ZeroMQ's queue is full and never blocks",
          "[client][publisher]") {
  test::temp_dir dir;
  // Nobody binds this endpoint: ZeroMQ queues up to the high-water mark, then refuses.
  auto pub = make_publisher({.endpoint = "ipc://" + (dir.path() / "nobody.sock").string(),
                             .max_batch_samples = 4,
                             .send_hwm = 2});
  constexpr int burst = 20000;
  const auto start = std::chrono::steady_clock::now();
  int sent = 0;
  for (int i = 0; i < burst; ++i) sent += pub->publish(generation_event()) ? 1 : 0;
  for (int i = 0; i < 400; ++i) pub->metric("m", i);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // A blocking send would hang here for good; 20000 non-blocking ones take milliseconds (1.9 s
  // in the ASan Debug build on a loaded 2-core machine, hence a bound far from both).
  CHECK(elapsed < 15s);

  const auto stats = pub->stats();
  CHECK(sent < 10);
  CHECK(stats.events_sent == static_cast<std::uint64_t>(sent));
  CHECK(stats.dropped(drop_reason::queue_full) == static_cast<std::uint64_t>(burst - sent) + 100);
  CHECK(stats.samples_dropped == 400);
  CHECK(stats.batches_sent == 0);
  // Every dropped envelope spent its seq: the sidecar will count them as a gap.
  CHECK(pub->next_seq() == static_cast<std::uint64_t>(burst + 100) + 1);
}

TEST_CASE("publisher drops spend their seq, and the next heartbeat counts exactly the gaps",
          "[client][publisher]") {
  test::temp_dir dir;
  auto pull = test::sidecar_socket(zmq::socket_type::pull);
  pull.set(zmq::sockopt::rcvhwm, 1);
  auto pub =
      make_publisher({.endpoint = test::bind_fresh(pull, "ipc", dir, "ingest"), .send_hwm = 1});
  // The receiver reads nothing yet, so its queue and the publisher's fill up.
  test::repeat_until([&] { (void)pub->publish(generation_event()); },
                     [&] { return pub->stats().dropped() > 0; }, 2000ms, 0ms);
  REQUIRE(pub->stats().dropped() > 0);

  std::vector<v1::Envelope> seen;
  bool heartbeat_seen = false;
  // The host's drop count when each heartbeat was made, by its seq: a heartbeat sent after the
  // one that arrives may still be dropped (the queue is full again), which the arriving one
  // cannot have counted.
  std::map<std::uint64_t, std::uint64_t> drops_when_made;
  const bool ok = test::repeat_until(
      [&] {
        while (auto parts = test::receive(pull, 0ms)) {
          v1::Envelope e;
          REQUIRE(e.ParseFromArray((*parts)[1].data(), static_cast<int>((*parts)[1].size())));
          heartbeat_seen = heartbeat_seen || e.has_heartbeat();
          seen.push_back(std::move(e));
        }
        if (!heartbeat_seen) {
          drops_when_made[pub->next_seq()] = pub->stats().dropped(drop_reason::queue_full);
          (void)pub->heartbeat();
        }
      },
      [&] { return heartbeat_seen; }, 2000ms, 2ms);
  REQUIRE(ok);
  // What the sidecar computes: numbers skipped between the envelopes it received.
  std::uint64_t gaps = 0;
  for (std::size_t i = 1; i < seen.size(); ++i) {
    INFO("message " << i);
    REQUIRE(seen[i].seq() > seen[i - 1].seq());
    gaps += seen[i].seq() - seen[i - 1].seq() - 1;
  }
  CHECK(seen.front().seq() == 1);
  CHECK(gaps > 0);
  const auto& beat = seen.back().heartbeat();
  CHECK(beat.events_sent() == pub->stats().events_sent);
  // Heartbeats dropped while the queue was full count too; the one that arrived saw every drop
  // made before it, and nothing was lost on the wire, so the gaps are exactly the host's drops.
  REQUIRE(drops_when_made.count(seen.back().seq()) == 1);
  CHECK(beat.events_dropped() == drops_when_made.at(seen.back().seq()));
  CHECK(beat.events_dropped() == gaps);
  CHECK(beat.events_dropped() <= pub->stats().dropped(drop_reason::queue_full));
}

TEST_CASE("publisher on a pub socket reaches a subscribing sidecar", "[client][publisher]") {
  test::temp_dir dir;
  auto sub = test::sidecar_socket(zmq::socket_type::sub);
  sub.set(zmq::sockopt::subscribe, "");
  auto pub = make_publisher({.endpoint = test::bind_fresh(sub, "tcp", dir, "ingest"),
                             .socket = client::ingest_socket::pub});
  // Until the subscription reaches the publisher, a pub socket drops silently: keep beating.
  std::optional<std::vector<zmq::message_t>> parts;
  REQUIRE(test::repeat_until([&] { (void)pub->heartbeat(); },
                             [&] { return (parts = test::receive(sub, 0ms)).has_value(); },
                             2000ms));
  CHECK(test::as_string((*parts)[0]) == "heartbeat");
  pub->metric("loss", 1.5);
  REQUIRE(pub->flush());
  // Heartbeats sent before the first one arrived may still be on their way.
  received r;
  do {
    r = next_event(sub, 1000ms);
  } while (r.topic == "heartbeat");
  CHECK(r.topic == "metrics");
  CHECK(r.envelope.metrics().samples(0).value() == 1.5);
}

TEST_CASE("publisher create rejects bad options with a message naming the endpoint",
          "[client][publisher]") {
  struct row {
    publisher_options options;
    std::string expected;
  };
  const std::vector<row> rows = {
      {{.endpoint = ""}, "no endpoint given"},
      {{.endpoint = "http://localhost:80"}, "invalid endpoint 'http://localhost:80'"},
      {{.endpoint = "tcp://"}, "invalid endpoint 'tcp://'"},
      {{.endpoint = "tcp://127.0.0.1:notaport"}, "can't connect to 'tcp://127.0.0.1:notaport'"},
      {{.endpoint = "ipc:///tmp/x.sock", .source = ""}, "source must not be empty"},
      {{.endpoint = "ipc:///tmp/x.sock", .max_batch_samples = 0}, "max_batch_samples"},
      {{.endpoint = "ipc:///tmp/x.sock", .send_hwm = 0}, "send_hwm"},
      {{.endpoint = "ipc:///tmp/x.sock", .heartbeat_interval = -1ms}, "heartbeat_interval"},
  };
  for (const auto& r : rows) {
    INFO("endpoint '" << r.options.endpoint << "', expecting: " << r.expected);
    auto p = publisher::create(r.options);
    REQUIRE_FALSE(p);
    CHECK(p.error().code() == sdk::status_code::invalid_argument);
    CHECK_THAT(p.error().message(),
               Catch::Contains("can't create publisher for '" + r.options.endpoint + "'") &&
                   Catch::Contains(r.expected));
  }
}
