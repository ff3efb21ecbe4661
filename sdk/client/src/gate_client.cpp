#include <loopwarden/client/gate_client.hpp>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <zmq_addon.hpp>

#include <loopwarden/v1/gate.pb.h>

#include "zmq_support.hpp"

namespace loopwarden::client {
namespace {

using steady = std::chrono::steady_clock;

// A prefix random per client object, so ids stay unique across clients, threads and restarts
// that share a sidecar.
std::string random_prefix() {
  std::random_device device;
  std::uniform_int_distribution<std::uint64_t> pick;
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(pick(device)));
  return buffer;
}

sdk::gate_verdict verdict_of(v1::GateVerdict v) {
  switch (v) {
    case v1::GATE_VERDICT_ALLOW:
      return sdk::gate_verdict::allow;
    case v1::GATE_VERDICT_REQUIRE_APPROVAL:
      return sdk::gate_verdict::require_approval;
    default:
      return sdk::gate_verdict::deny;
  }
}

}  // namespace

struct gate_client::impl {
  explicit impl(gate_client_options o) : options(std::move(o)), id_prefix(random_prefix()) {}

  // Opens a fresh socket: the old one (and any reply still on its way to it) is gone.
  sdk::status open() {
    socket.reset();
    try {
      socket.emplace(zmq::socket_type::dealer, std::chrono::milliseconds(0));
    } catch (const zmq::error_t& e) {
      socket.reset();
      return detail::to_status(e, "can't open socket");
    }
    if (auto s = detail::connect(socket->get(), options.endpoint); !s.ok()) {
      socket.reset();
      return s;
    }
    return sdk::status::success();
  }

  gate_decision unanswered(std::string request_id, std::string reason) {
    ++stats.timed_out;
    gate_decision d;
    d.verdict = options.on_timeout == gate_timeout_policy::allow ? sdk::gate_verdict::allow
                                                                 : sdk::gate_verdict::deny;
    d.reason = std::move(reason);
    d.rule_id = "client.timeout";
    d.request_id = std::move(request_id);
    d.timed_out = true;
    return d;
  }

  // Waits until `deadline` for the reply to `request_id`; nullopt when none came.
  std::optional<v1::GateDecision> await(const std::string& request_id,
                                        steady::time_point deadline) {
    std::vector<zmq::message_t> parts;
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t item{socket->get().handle(), 0, ZMQ_POLLIN, 0};
      try {
        zmq::poll(&item, 1, left);
        if ((item.revents & ZMQ_POLLIN) == 0) continue;
        parts.clear();
        if (!zmq::recv_multipart(socket->get(), std::back_inserter(parts),
                                 zmq::recv_flags::dontwait)) {
          continue;
        }
      } catch (const zmq::error_t&) {
        continue;  // EINTR: the deadline still bounds the wait
      }
      v1::GateDecision decision;
      if (parts.size() != 2 || parts[0].size() != 0 ||
          !decision.ParseFromArray(parts[1].data(), static_cast<int>(parts[1].size()))) {
        ++stats.malformed;
        continue;
      }
      if (decision.request_id() != request_id) {
        ++stats.stale_replies;
        continue;
      }
      return decision;
    }
  }

  gate_decision ask(const v1::ActionRequest& action, std::chrono::milliseconds timeout,
                    const std::string& approval_id) {
    ++stats.asked;
    const auto deadline = steady::now() + timeout;
    std::string request_id = id_prefix + "-" + std::to_string(++next_id);
    if (!socket) {
      // A reopen after an earlier timeout failed; try again before giving up.
      if (auto s = open(); !s.ok()) {
        return unanswered(std::move(request_id), "sidecar unreachable: " + s.message());
      }
    }

    v1::GateRequest request;
    request.set_request_id(request_id);
    request.set_source(options.source);
    request.set_run_id(options.run_id);
    *request.mutable_action() = action;
    request.set_timeout_ms(static_cast<std::uint32_t>(
        std::clamp<std::int64_t>(timeout.count(), 0, std::numeric_limits<std::uint32_t>::max())));
    request.set_time_unix_nano(detail::now_unix_nano());
    request.set_approval_id(approval_id);
    const std::string payload = request.SerializeAsString();

    bool sent = false;
    try {
      auto& s = socket->get();
      sent = s.send(zmq::const_buffer(), zmq::send_flags::sndmore | zmq::send_flags::dontwait) &&
             s.send(zmq::buffer(payload), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
      sent = false;
    }
    std::optional<v1::GateDecision> reply;
    if (sent) reply = await(request_id, deadline);
    if (!reply) {
      ++stats.reconnects;
      (void)open();  // on failure the next ask() retries
      return unanswered(
          std::move(request_id),
          sent ? "sidecar did not answer within " + std::to_string(timeout.count()) + " ms"
               : "sidecar unreachable: can't queue the request for '" + options.endpoint + "'");
    }

    ++stats.answered;
    gate_decision d;
    d.verdict = verdict_of(reply->verdict());
    d.reason = reply->reason();
    if (reply->verdict() != v1::GATE_VERDICT_ALLOW &&
        reply->verdict() != v1::GATE_VERDICT_REQUIRE_APPROVAL &&
        reply->verdict() != v1::GATE_VERDICT_DENY) {
      d.reason = "sidecar answered without a verdict" + (d.reason.empty() ? "" : ": " + d.reason);
    }
    d.rule_id = reply->rule_id();
    d.monitor = reply->monitor();
    d.alternative = reply->alternative();
    d.approval_id = reply->approval_id();
    d.request_id = std::move(request_id);
    return d;
  }

  const gate_client_options options;
  const std::string id_prefix;
  std::uint64_t next_id = 0;
  std::optional<detail::owned_socket> socket;  // empty only after a failed reopen
  gate_client_stats stats;
};

sdk::result<std::unique_ptr<gate_client>> gate_client::create(gate_client_options options) {
  const std::string context = "can't create gate client for '" + options.endpoint + "'";
  if (auto s = detail::check_endpoint(options.endpoint); !s.ok()) return s.with_context(context);
  if (options.timeout.count() <= 0) {
    return sdk::make_error(sdk::status_code::invalid_argument, "timeout must be positive")
        .with_context(context);
  }
  auto m = std::make_unique<impl>(std::move(options));
  if (auto s = m->open(); !s.ok()) return s.with_context(context);
  return std::unique_ptr<gate_client>(new gate_client(std::move(m)));
}

gate_client::gate_client(std::unique_ptr<impl> state) : impl_(std::move(state)) {}

gate_client::~gate_client() = default;

gate_decision gate_client::ask(const v1::ActionRequest& action) {
  return impl_->ask(action, impl_->options.timeout, {});
}

gate_decision gate_client::ask(const v1::ActionRequest& action, std::chrono::milliseconds timeout) {
  return impl_->ask(action, timeout, {});
}

gate_decision gate_client::ask(const v1::ActionRequest& action, std::chrono::milliseconds timeout,
                               const std::string& approval_id) {
  return impl_->ask(action, timeout, approval_id);
}

gate_decision gate_client::wait_for_approval(const v1::ActionRequest& action,
                                             const std::string& approval_id,
                                             std::chrono::milliseconds max_wait,
                                             std::chrono::milliseconds poll) {
  const auto deadline = steady::now() + max_wait;
  if (poll.count() <= 0) poll = std::chrono::milliseconds(1);
  gate_decision last;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    const auto per_ask = std::max(std::chrono::milliseconds(1), std::min(impl_->options.timeout, left));
    last = impl_->ask(action, per_ask, approval_id);
    if (!last.timed_out && last.verdict != sdk::gate_verdict::require_approval) return last;
    const auto now = steady::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(std::min<steady::duration>(poll, deadline - now));
    if (steady::now() >= deadline) break;
  }
  gate_decision d;
  d.verdict = sdk::gate_verdict::deny;
  d.rule_id = "client.approval_timeout";
  d.reason = "no decision on approval '" + approval_id + "' within " +
             std::to_string(max_wait.count()) + " ms" +
             (last.reason.empty() ? std::string() : " (last answer: " + last.reason + ")");
  d.approval_id = approval_id;
  d.monitor = last.monitor;
  d.request_id = last.request_id;
  d.timed_out = true;
  return d;
}

gate_decision gate_client::ask_and_wait(const v1::ActionRequest& action,
                                        std::chrono::milliseconds max_wait,
                                        std::chrono::milliseconds poll) {
  const auto start = steady::now();
  gate_decision first = ask(action);
  if (first.verdict != sdk::gate_verdict::require_approval || first.approval_id.empty()) {
    return first;
  }
  const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start);
  return wait_for_approval(action, first.approval_id,
                           std::max(std::chrono::milliseconds(0), max_wait - spent), poll);
}

gate_client_stats gate_client::stats() const { return impl_->stats; }

const gate_client_options& gate_client::options() const { return impl_->options; }

}  // namespace loopwarden::client
