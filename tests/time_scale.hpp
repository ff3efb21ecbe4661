#pragma once
// Time limits for builds that run slower than a plain one. The asan and tsan test presets
// (CMakePresets.json) set LOOPWARDEN_TEST_TIME_SCALE to how many times slower their build may run
// on a loaded machine; ctest hands it to every test and the daemons the tests start.
//
// Scale only limits of the form "must happen within X" (a wait for a trip, a deadline, an upper
// bound on elapsed time): under a sanitizer the same thing happens, later. Never scale a lower
// bound ("not before X") or a window in which something must NOT happen (a CHECK_FALSE on a
// receive): a longer window there changes what the test checks. Without the variable every limit
// is what the test says, so the normal build is checked exactly as before.
//
// Thread-safety: safe from any thread (the value is read once, at first use).

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace loopwarden::test {

// The factor: 1 when LOOPWARDEN_TEST_TIME_SCALE is unset or empty. A value that is not a number
// from 1 to 100 stops the test process, so a typo cannot shrink or silently drop the limits.
inline double time_scale() {
  static const double scale = [] {
    const char* text = std::getenv("LOOPWARDEN_TEST_TIME_SCALE");
    if (text == nullptr || *text == '\0') return 1.0;
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= 1.0 && value <= 100.0)) {
      std::fprintf(stderr, "LOOPWARDEN_TEST_TIME_SCALE=%s: expected a number from 1 to 100\n",
                   text);
      std::abort();
    }
    return value;
  }();
  return scale;
}

// A "must happen within" limit, times time_scale(), rounded up to a millisecond.
template <typename Rep, typename Period>
std::chrono::milliseconds scaled(std::chrono::duration<Rep, Period> limit) {
  const double ms = std::chrono::duration<double, std::milli>(limit).count() * time_scale();
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(ms)));
}

}  // namespace loopwarden::test
