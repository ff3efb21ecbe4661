// cusum::state() and cusum::restore(): a cusum restored half way through a seeded stream ends
// bit for bit where an uninterrupted one does (what a monitor's snapshot relies on).

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <loopwarden/stats/cusum.hpp>
#include <random>
#include <stdexcept>
#include <vector>

namespace stats = loopwarden::sdk::stats;

TEST_CASE("a restored cusum continues exactly where the saved one was", "[stats][cusum]") {
  const stats::cusum_options options{.target = 0.3, .sigma = 0.02, .k = 0.5, .h = 4.0};
  std::mt19937_64 rng(2024);
  std::normal_distribution<double> normal(0.31, 0.025);
  std::vector<double> xs(400);
  for (double& x : xs) x = normal(rng);
  xs[17] = std::numeric_limits<double>::quiet_NaN();  // an ignored value on the first half

  stats::cusum whole(options);
  stats::cusum first(options);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    whole.update(xs[i]);
    if (i < xs.size() / 2) first.update(xs[i]);
  }
  stats::cusum second(options);
  second.restore(first.state());
  for (std::size_t i = xs.size() / 2; i < xs.size(); ++i) second.update(xs[i]);

  CHECK(second.upper() == whole.upper());
  CHECK(second.lower() == whole.lower());
  CHECK(second.count() == whole.count());
  CHECK(second.ignored() == whole.ignored());
  CHECK(second.signals() == whole.signals());
  CHECK(second.last_signal() == whole.last_signal());
  CHECK(whole.signals() > 0);  // the stream drifts by ½σ: the comparison covers signals too

  stats::cusum_state bad = whole.state();
  bad.upper = -1.0;
  CHECK_THROWS_AS(second.restore(bad), std::invalid_argument);
  bad.upper = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(second.restore(bad), std::invalid_argument);
  CHECK(second.upper() == whole.upper());  // a refused restore changes nothing
}
