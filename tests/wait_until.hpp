#pragma once
// Polling until something holds: the tests' one way of waiting for another thread or process.
//
// The timeout is a "must happen within" limit, so it is scaled by LOOPWARDEN_TEST_TIME_SCALE
// (time_scale.hpp): under a sanitizer the same thing happens, later. A wait for something that
// must never happen only gets longer, never shorter, under a sanitizer.
//
// Thread-safety: as safe as `done`.

#include <chrono>
#include <thread>

#include "time_scale.hpp"

namespace loopwarden::test {

// Polls `done()` every `period` until it is true or `timeout` (scaled) passes; returns its last
// value.
template <typename Done>
bool wait_until(Done done, std::chrono::milliseconds timeout = std::chrono::seconds(10),
                std::chrono::milliseconds period = std::chrono::milliseconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(period);
  }
}

}  // namespace loopwarden::test
