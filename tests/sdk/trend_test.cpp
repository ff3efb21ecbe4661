// Oracle tests for loopwarden/stats/trend.hpp: the windowed least-squares line against exact
// lines, a geometric series and a four-point example worked by hand, and the floor projection
// against its closed form.

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <loopwarden/stats/trend.hpp>
#include <stdexcept>

namespace stats = loopwarden::sdk::stats;

namespace {
constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_value = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("trend recovers an exact line exactly, also at large generation numbers", "[stats][trend]") {
  for (double offset : {0.0, 1e6}) {
    INFO("x offset " << offset);
    stats::trend t(10);
    for (int g = 0; g < 10; ++g) {
      const double x = offset + g;
      t.add(x, 3.0 - 0.25 * x);
    }
    const stats::line_fit f = t.fit();
    CHECK(f.count == 10);
    CHECK(f.slope == Approx(-0.25).epsilon(1e-12));
    CHECK(f.intercept == Approx(3.0).epsilon(1e-9));  // extrapolated back 1e6 from the data
    CHECK(f.slope_standard_error == Approx(0.0).margin(1e-12));
  }
}

TEST_CASE("trend of a geometric series r^g has slope ln r", "[stats][trend]") {
  for (double r : {0.9, 0.5, 1.1}) {
    INFO("r = " << r);
    stats::trend t(15);
    for (int g = 0; g < 15; ++g) t.add(g, std::log(2.0 * std::pow(r, g)));
    const stats::line_fit f = t.fit();
    CHECK(f.slope == Approx(std::log(r)).epsilon(1e-12));
    CHECK(f.intercept == Approx(std::log(2.0)).epsilon(1e-12));
  }
}

TEST_CASE("trend matches a hand-computed fit with standard errors", "[stats][trend]") {
  // x = 0, 1, 2, 3; y = 1, 3, 2, 5. x̄ = 1.5, ȳ = 2.75, Sxx = 5, Sxy = 5.5: slope 1.1,
  // intercept 1.1. Fitted 1.1, 2.2, 3.3, 4.4; residuals −0.1, 0.8, −1.3, 0.6; SSE = 2.7,
  // s² = 2.7 / 2 = 1.35. SE(slope) = sqrt(1.35 / 5) = sqrt(0.27);
  // SE(intercept) = sqrt(1.35 · (1/4 + 2.25/5)) = sqrt(0.945).
  stats::trend t(4);
  const double ys[] = {1.0, 3.0, 2.0, 5.0};
  for (int i = 0; i < 4; ++i) t.add(i, ys[i]);
  const stats::line_fit f = t.fit();
  CHECK(f.count == 4);
  CHECK(f.slope == Approx(1.1).epsilon(1e-14));
  CHECK(f.intercept == Approx(1.1).epsilon(1e-14));
  CHECK(f.slope_standard_error == Approx(std::sqrt(0.27)).epsilon(1e-14));
  CHECK(f.intercept_standard_error == Approx(std::sqrt(0.945)).epsilon(1e-14));
}

TEST_CASE("trend fits only the last window points", "[stats][trend]") {
  stats::trend t(5);
  // Seven points on y = 10 − x, then five on y = 2x: the window (size 5) holds only the latter,
  // and its ring buffer has wrapped, so the order in storage differs from the order added.
  for (int g = 0; g < 7; ++g) t.add(g, 10.0 - g);
  for (int g = 7; g < 12; ++g) t.add(g, 2.0 * g);
  CHECK(t.size() == 5);
  CHECK(t.window() == 5);
  const stats::line_fit f = t.fit();
  CHECK(f.count == 5);
  CHECK(f.slope == Approx(2.0).epsilon(1e-13));
  CHECK(f.intercept == Approx(0.0).margin(1e-12));

  // One point more of the old line changes the fit: the window really moves.
  t.add(12, 10.0 - 12);
  CHECK(t.fit().slope < 1.0);
}

TEST_CASE("trend is NaN when undetermined, ignores non-finite points and rejects a tiny window",
          "[stats][trend]") {
  stats::trend t(3);
  CHECK(std::isnan(t.fit().slope));
  t.add(1.0, 2.0);
  CHECK(std::isnan(t.fit().slope));
  t.add(1.0, 5.0);  // the same x twice: Sxx = 0
  CHECK(std::isnan(t.fit().slope));
  CHECK(std::isnan(t.fit().intercept));

  stats::trend two(3);
  two.add(0.0, 1.0);
  two.add(nan_value, 1.0);
  two.add(1.0, inf_value);
  two.add(2.0, 5.0);  // two points: a line, but no residual degrees of freedom
  CHECK(two.ignored() == 2);
  CHECK(two.size() == 2);
  const stats::line_fit f = two.fit();
  CHECK(f.slope == Approx(2.0).epsilon(1e-15));
  CHECK(f.intercept == Approx(1.0).epsilon(1e-15));
  CHECK(std::isnan(f.slope_standard_error));
  CHECK(std::isnan(f.intercept_standard_error));

  two.reset();
  CHECK(two.size() == 0);
  CHECK(two.ignored() == 0);
  CHECK(std::isnan(two.fit().slope));

  CHECK_THROWS_AS(stats::trend(1), std::invalid_argument);
  CHECK_THROWS_AS(stats::trend(0), std::invalid_argument);
}

TEST_CASE("generations until floor projects the log-ratio line to the floor", "[stats][trend]") {
  // r = 0.9 per generation, now at ratio 1, floor 0.5: ln 0.5 / ln 0.9 = 6.5788 generations.
  const double g = stats::generations_until_floor(0.0, std::log(0.9), 0.5);
  CHECK(g == Approx(std::log(0.5) / std::log(0.9)).epsilon(1e-14));
  CHECK(g == Approx(6.579).margin(5e-4));
  // Check by walking the line: 0.9^g is the floor.
  CHECK(std::pow(0.9, g) == Approx(0.5).epsilon(1e-13));

  // From ratio 0.8 the remaining distance is ln(0.5/0.8).
  CHECK(stats::generations_until_floor(std::log(0.8), std::log(0.9), 0.5) ==
        Approx(std::log(0.5 / 0.8) / std::log(0.9)).epsilon(1e-13));

  // Never: a flat or growing spread.
  CHECK(stats::generations_until_floor(0.0, 0.0, 0.5) == inf_value);
  CHECK(stats::generations_until_floor(0.0, 0.01, 0.5) == inf_value);
  // Already there (at or below the floor), whatever the slope.
  CHECK(stats::generations_until_floor(std::log(0.5), -0.1, 0.5) == 0.0);
  CHECK(stats::generations_until_floor(std::log(0.4), 0.3, 0.5) == 0.0);
  CHECK(stats::generations_until_floor(-inf_value, -0.1, 0.5) == 0.0);
  // Undefined input.
  CHECK(std::isnan(stats::generations_until_floor(nan_value, -0.1, 0.5)));
  CHECK(std::isnan(stats::generations_until_floor(0.0, nan_value, 0.5)));
  // A floor outside (0, ∞) is a programming error.
  CHECK_THROWS_AS(stats::generations_until_floor(0.0, -0.1, 0.0), std::invalid_argument);
  CHECK_THROWS_AS(stats::generations_until_floor(0.0, -0.1, -0.5), std::invalid_argument);
  CHECK_THROWS_AS(stats::generations_until_floor(0.0, -0.1, nan_value), std::invalid_argument);
  CHECK_THROWS_AS(stats::generations_until_floor(0.0, -0.1, inf_value), std::invalid_argument);
}

TEST_CASE("trend slope of a geometric decay feeds the floor projection", "[stats][trend]") {
  stats::trend t(8);
  for (int g = 0; g < 8; ++g) t.add(g, g * std::log(0.9));  // log ratio of 0.9^g
  const stats::line_fit f = t.fit();
  // At generation 7 the ratio is 0.9^7; the floor 0.5 = 0.9^6.579 was passed already.
  CHECK(stats::generations_until_floor(7 * std::log(0.9), f.slope, 0.5) == 0.0);
  // A floor of 0.25 = 0.9^13.158 is 6.158 generations further.
  CHECK(stats::generations_until_floor(7 * std::log(0.9), f.slope, 0.25) ==
        Approx(std::log(0.25) / std::log(0.9) - 7.0).epsilon(1e-12));
}
