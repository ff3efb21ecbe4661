// The state()/restore() pairs of cusum, ewma_chart and trend (for monitor snapshots): a detector
// restored halfway through a series continues bit for bit like one that saw the whole series, and
// a state that cannot be right is refused.

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <loopwarden/stats/cusum.hpp>
#include <loopwarden/stats/ewma.hpp>
#include <loopwarden/stats/trend.hpp>
#include <loopwarden/stats/welford.hpp>
#include <random>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

namespace {

std::vector<double> series(unsigned seed, int n) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(-0.2, 1.0);
  std::vector<double> out(static_cast<std::size_t>(n));
  for (double& x : out) x = normal(rng);
  out[7] = std::numeric_limits<double>::quiet_NaN();  // counted in ignored(), must survive too
  return out;
}

}  // namespace

TEST_CASE("cusum restored from its state continues exactly", "[stats][state]") {
  const auto xs = series(1, 200);
  const stats::cusum_options o{.k = 0.5, .h = 4.0, .reset_after_signal = true};
  stats::cusum whole(o);
  stats::cusum first(o);
  for (std::size_t i = 0; i < 100; ++i) first.update(xs[i]);
  stats::cusum second(o);
  second.restore(first.state());
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const auto side = whole.update(xs[i]);
    if (i >= 100) {
      INFO("i = " << i);
      REQUIRE(second.update(xs[i]) == side);
      REQUIRE(second.lower() == whole.lower());
      REQUIRE(second.upper() == whole.upper());
    }
  }
  CHECK(second.signals() == whole.signals());
  CHECK(second.ignored() == whole.ignored());
  CHECK(whole.signals() > 0);  // the series does cross: the comparison covers signals
  CHECK_THROWS_AS(second.restore({.upper = -1.0}), std::invalid_argument);
  CHECK_THROWS_AS(second.restore({.lower = std::numeric_limits<double>::infinity()}),
                  std::invalid_argument);
}

TEST_CASE("ewma chart restored from its state continues exactly", "[stats][state]") {
  const auto xs = series(2, 120);
  const stats::ewma_chart_options o{.lambda = 0.3, .width = 2.0};
  stats::ewma_chart whole(o);
  stats::ewma_chart first(o);
  for (std::size_t i = 0; i < 60; ++i) first.update(xs[i]);
  stats::ewma_chart second(o);
  second.restore(first.state());
  int signals = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const auto side = whole.update(xs[i]);
    signals += stats::signalled(side) ? 1 : 0;
    if (i >= 60) {
      INFO("i = " << i);
      REQUIRE(second.update(xs[i]) == side);
      REQUIRE(second.statistic() == whole.statistic());
      REQUIRE(second.lower_limit() == whole.lower_limit());
    }
  }
  CHECK(signals > 0);
  CHECK(second.count() == whole.count());
  CHECK_THROWS_AS(second.restore({.statistic = 0.0, .decay = 1.5}), std::invalid_argument);
}

TEST_CASE("trend restored from its state fits the same line", "[stats][state]") {
  stats::trend whole(5);
  stats::trend first(5);
  for (int i = 0; i < 8; ++i) {  // wraps the ring buffer
    whole.add(i, std::log(0.9) * i + 0.01 * (i % 3));
    first.add(i, std::log(0.9) * i + 0.01 * (i % 3));
  }
  stats::trend second(5);
  second.restore(first.state());
  for (int i = 8; i < 11; ++i) {
    whole.add(i, -0.1 * i);
    second.add(i, -0.1 * i);
    REQUIRE(second.fit().slope == whole.fit().slope);
    REQUIRE(second.fit().intercept == whole.fit().intercept);
  }
  stats::trend other(4);
  CHECK_THROWS_AS(other.restore(first.state()), std::invalid_argument);  // another window
  auto bad = first.state();
  bad.size = 3;  // not full, so next must equal size
  bad.next = 1;
  CHECK_THROWS_AS(second.restore(bad), std::invalid_argument);
}

TEST_CASE("welford restored from its state continues exactly", "[stats][state]") {
  const auto xs = series(3, 50);
  stats::welford whole;
  stats::welford first;
  for (std::size_t i = 0; i < 20; ++i) first.add(xs[i]);
  stats::welford second;
  second.restore(first.state());
  for (std::size_t i = 0; i < xs.size(); ++i) {
    whole.add(xs[i]);
    if (i >= 20) second.add(xs[i]);
  }
  CHECK(second.mean() == whole.mean());
  CHECK(second.sample_variance() == whole.sample_variance());
  CHECK(second.min() == whole.min());
  CHECK(second.max() == whole.max());
  CHECK(second.count() == whole.count());
  CHECK(second.ignored() == whole.ignored());
  CHECK_THROWS_AS(second.restore({.m2 = -1.0}), std::invalid_argument);
}
