// Oracle tests for loopwarden/stats/quantile_sketch.hpp, time_buckets.hpp and
// windowed_quantile.hpp: every estimate against the exact lower quantile of the same values
// (sorted), within the sketch's stated relative accuracy; a five-value case worked by hand.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <loopwarden/stats/quantile_sketch.hpp>
#include <loopwarden/stats/time_buckets.hpp>
#include <loopwarden/stats/windowed_quantile.hpp>
#include <random>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {

// The exact lower quantile the sketch promises to approximate: 0-based rank ⌊q (n − 1)⌋.
double exact_lower_quantile(std::vector<double> xs, double q) {
  std::sort(xs.begin(), xs.end());
  const auto rank = static_cast<std::size_t>(std::floor(q * static_cast<double>(xs.size() - 1)));
  return xs[rank];
}

double relative_error(double estimate, double exact) {
  return exact == 0.0 ? std::abs(estimate) : std::abs(estimate - exact) / exact;
}

const std::vector<double> probes = {0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999};

}  // namespace

TEST_CASE("quantile_sketch matches a five-value case worked by hand", "[stats][quantile_sketch]") {
  // α = 0.2: γ = 1.2 / 0.8 = 1.5. Bins ⌈log_1.5 x⌉: 1 → 0, 2 → 2 (1.71), 3 → 3 (2.71),
  // 4 → 4 (3.42), 5 → 4 (3.97). Estimate of bin i: 2 · 1.5^i / 2.5.
  stats::quantile_sketch s(0.2);
  for (double x : {5.0, 1.0, 4.0, 2.0, 3.0}) s.add(x);
  CHECK(s.count() == 5);
  CHECK(s.bins() == 5);  // bins 0..4, bin 1 empty
  CHECK(s.mean() == Approx(3.0));
  CHECK(s.quantile(0.25) == Approx(1.8));   // rank 1: the value 2, bin 2
  CHECK(s.quantile(0.5) == Approx(2.7));    // rank 2: the value 3, bin 3
  CHECK(s.quantile(0.75) == Approx(4.05));  // rank 3: the value 4, bin 4
  CHECK(s.quantile(0.9) == Approx(4.05));   // rank 3 (⌊3.6⌋)
  CHECK(s.quantile(0.0) == 1.0);            // exact min and max
  CHECK(s.quantile(1.0) == 5.0);
  CHECK(std::isnan(s.quantile(1.5)));
}

TEST_CASE("quantile_sketch stays within its relative accuracy of the exact quantiles",
          "[stats][quantile_sketch]") {
  std::mt19937_64 rng(20261203);
  struct row {
    const char* name;
    std::function<double()> draw;
  };
  std::lognormal_distribution<double> lognormal(3.0, 2.0);  // spans about 7 decades
  std::exponential_distribution<double> exponential(1.0 / 600.0);
  std::uniform_real_distribution<double> uniform(100.0, 200.0);
  const std::vector<row> rows = {{"lognormal(3, 2)", [&] { return lognormal(rng); }},
                                 {"exponential(mean 600)", [&] { return exponential(rng); }},
                                 {"uniform(100, 200)", [&] { return uniform(rng); }}};
  for (const double alpha : {0.01, 0.05}) {
    for (const auto& r : rows) {
      stats::quantile_sketch s(alpha);
      std::vector<double> xs(100'000);
      for (auto& x : xs) {
        x = r.draw();
        s.add(x);
      }
      CHECK(s.collapsed() == 0);
      for (const double q : probes) {
        const double exact = exact_lower_quantile(xs, q);
        INFO(r.name << ", alpha " << alpha << ", q " << q << ": sketch " << s.quantile(q)
                    << ", exact " << exact);
        CHECK(relative_error(s.quantile(q), exact) <= alpha * (1.0 + 1e-9));
      }
    }
  }
}

TEST_CASE("quantile_sketch merged from two halves answers as one sketch of both",
          "[stats][quantile_sketch]") {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> d(0.0, 1.5);
  stats::quantile_sketch all(0.01);
  stats::quantile_sketch a(0.01);
  stats::quantile_sketch b(0.01);
  for (int i = 0; i < 20'000; ++i) {
    const double x = d(rng);
    all.add(x);
    (i % 3 == 0 ? a : b).add(x);
  }
  a.merge(b);
  CHECK(a.count() == all.count());
  CHECK(a.sum() == Approx(all.sum()).epsilon(1e-12));
  for (const double q : probes) {
    INFO("q " << q);
    CHECK(a.quantile(q) == all.quantile(q));
  }
  stats::quantile_sketch other(0.02);
  CHECK_THROWS_AS(a.merge(other), std::invalid_argument);
}

TEST_CASE("quantile_sketch keeps to max_bins and its upper quantiles keep the bound",
          "[stats][quantile_sketch]") {
  // Twelve decades at α = 0.01 would need about 1380 bins; 200 are allowed.
  stats::quantile_sketch s(0.01, 200);
  std::vector<double> xs;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> exponent(-6.0, 6.0);
  for (int i = 0; i < 50'000; ++i) {
    xs.push_back(std::pow(10.0, exponent(rng)));
    s.add(xs.back());
  }
  CHECK(s.bins() <= 200);
  CHECK(s.collapsed() > 0);
  // 200 bins of γ = 1.0202 span 1.74 decades below the maximum: q ≥ 0.9 lies within them.
  for (const double q : {0.9, 0.99, 0.999}) {
    INFO("q " << q);
    CHECK(relative_error(s.quantile(q), exact_lower_quantile(xs, q)) <= 0.01 * (1.0 + 1e-9));
  }
  // A value below the kept range lands in the lowest bin; counted, never lost.
  const auto before = s.count();
  s.add(1e-7);
  CHECK(s.count() == before + 1);
  CHECK(s.bins() <= 200);
}

TEST_CASE("quantile_sketch refuses NaN, infinite and negative values and keeps zeros",
          "[stats][quantile_sketch]") {
  stats::quantile_sketch s;
  s.add(std::numeric_limits<double>::quiet_NaN());
  s.add(std::numeric_limits<double>::infinity());
  s.add(-1.0);
  CHECK(s.ignored() == 3);
  CHECK(s.empty());
  CHECK(std::isnan(s.quantile(0.5)));
  CHECK(std::isnan(s.mean()));
  s.add(0.0, 3);
  s.add(10.0);
  CHECK(s.count() == 4);
  CHECK(s.quantile(0.5) == 0.0);  // rank 1 of {0, 0, 0, 10}
  CHECK(s.quantile(1.0) == 10.0);
  CHECK_THROWS_AS(stats::quantile_sketch(0.0), std::invalid_argument);
  CHECK_THROWS_AS(stats::quantile_sketch(1.0), std::invalid_argument);
  CHECK_THROWS_AS(stats::quantile_sketch(0.01, 1), std::invalid_argument);
  CHECK_THROWS_AS(stats::quantile_sketch(0.01, 100, 0.0), std::invalid_argument);
}

TEST_CASE("quantile_sketch state round-trips and inconsistent state is refused",
          "[stats][quantile_sketch]") {
  stats::quantile_sketch s(0.02, 500);
  for (int i = 1; i <= 1000; ++i) s.add(i * 0.37);
  stats::quantile_sketch copy;
  REQUIRE(copy.import_state(s.export_state()));
  CHECK(copy.count() == s.count());
  CHECK(copy.relative_accuracy() == 0.02);
  for (const double q : probes) CHECK(copy.quantile(q) == s.quantile(q));

  struct row {
    const char* name;
    std::function<void(stats::quantile_sketch_state&)> spoil;
  };
  const std::vector<row> rows = {
      {"count does not add up", [](auto& st) { st.count += 1; }},
      {"accuracy out of range", [](auto& st) { st.relative_accuracy = 1.5; }},
      {"more bins than allowed", [](auto& st) { st.max_bins = 2; }},
      {"min above max", [](auto& st) { st.min = st.max + 1.0; }},
      {"negative sum", [](auto& st) { st.sum = -1.0; }},
      {"absurd offset", [](auto& st) { st.offset = std::int64_t{1} << 50; }},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    auto st = s.export_state();
    r.spoil(st);
    stats::quantile_sketch target(0.01);
    target.add(5.0);
    CHECK_FALSE(target.import_state(st));
    CHECK(target.count() == 1);  // unchanged
  }
}

TEST_CASE("time_buckets keeps the last count buckets and windows them by start time",
          "[stats][time_buckets]") {
  stats::time_buckets<int> b(10, 3);
  *b.at(5) += 1;   // bucket 0
  *b.at(12) += 2;  // bucket 1
  *b.at(29) += 4;  // bucket 2
  auto window_sum = [&](std::int64_t now) {
    int sum = 0;
    std::vector<std::int64_t> starts;
    b.for_each_in_window(now, [&](std::int64_t start, const int& v) {
      starts.push_back(start);
      sum += v;
    });
    CHECK(starts.size() == 3);
    return std::pair{sum, starts.front()};
  };
  // On a boundary: the three complete buckets before it.
  CHECK(window_sum(30) == std::pair{7, std::int64_t{0}});
  // Mid-bucket: the partial bucket and the two before it.
  CHECK(window_sum(25) == std::pair{7, std::int64_t{0}});
  CHECK(window_sum(31) == std::pair{6, std::int64_t{10}});
  // A new bucket 3 reuses bucket 0's slot: its value starts from the prototype.
  *b.at(30) += 8;
  CHECK(window_sum(40) == std::pair{14, std::int64_t{10}});
  // Too old for the buckets kept: nullptr, and nothing changes.
  CHECK(b.at(9) == nullptr);
  CHECK(window_sum(40).first == 14);
  // Far ahead: every older bucket is gone from that window.
  b.advance(1000);
  CHECK(window_sum(1000).first == 0);
  CHECK(b.at(975) == nullptr);  // bucket 97 is older than the three kept (98, 99, 100)
  CHECK(b.at(985) != nullptr);
  CHECK(stats::bucket_index(-1, 10) == -1);
  CHECK(stats::bucket_index(-10, 10) == -1);
  CHECK(stats::bucket_index(-11, 10) == -2);
  CHECK_THROWS_AS(stats::time_buckets<int>(0, 3), std::invalid_argument);
  CHECK_THROWS_AS(stats::time_buckets<int>(10, 0), std::invalid_argument);
}

TEST_CASE("windowed_quantile matches the exact quantiles of the values inside its window",
          "[stats][windowed_quantile]") {
  constexpr std::int64_t width = 600;  // ten-minute buckets of a one-hour window, in seconds
  constexpr std::size_t buckets = 6;
  constexpr double alpha = 0.01;
  stats::windowed_quantile w(width, buckets, alpha);
  std::mt19937_64 rng(42);
  std::exponential_distribution<double> gap(1.0 / 3.0);  // a value every 3 s on average
  std::lognormal_distribution<double> value(6.0, 1.0);   // review seconds
  std::vector<std::pair<std::int64_t, double>> seen;
  double t = 0.0;
  std::int64_t next_check = width;
  int checks = 0;
  while (t < 20 * 3600.0) {
    t += gap(rng);
    const auto now = static_cast<std::int64_t>(t);
    // Check at bucket boundaries and in the middle of buckets, before adding the new value.
    if (now >= next_check) {
      const std::int64_t at = next_check;
      std::vector<double> inside;
      for (const auto& [ts, x] : seen) {
        const std::int64_t start = stats::bucket_index(ts, width) * width;
        if (start >= at - static_cast<std::int64_t>(buckets) * width && start < at) {
          inside.push_back(x);
        }
      }
      const auto sketch = w.window(at);
      INFO("window ending at " << at << " s");
      REQUIRE(sketch.count() == inside.size());
      for (const double q : {0.5, 0.9}) {
        INFO("q " << q);
        CHECK(relative_error(sketch.quantile(q), exact_lower_quantile(inside, q)) <=
              alpha * (1.0 + 1e-9));
      }
      ++checks;
      next_check += width / 2;
    }
    const double x = value(rng);
    w.add(now, x);
    seen.emplace_back(now, x);
  }
  CHECK(checks > 100);
  CHECK(w.late() == 0);
  w.add(0, 1.0);  // hours too old
  CHECK(w.late() == 1);
}
