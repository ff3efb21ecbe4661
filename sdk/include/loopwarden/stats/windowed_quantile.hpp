#pragma once
// windowed_quantile: quantiles of the values seen over a sliding time window (the last hour of
// review times, say), with quantile_sketch's relative-error bound and bounded memory.

#include <cstddef>
#include <cstdint>
#include <limits>

#include <loopwarden/stats/quantile_sketch.hpp>
#include <loopwarden/stats/time_buckets.hpp>

namespace loopwarden::sdk::stats {

// A time_buckets of quantile_sketches: add(t, x) puts x in the sketch of t's bucket, and
// window(now) merges the sketches of the window of `now` (the `buckets` buckets whose start lies
// in [now − buckets·width, now); see time_buckets). Because sketches merge exactly, window(now)
// answers as one sketch fed exactly the values whose time falls in those buckets, so each
// quantile is within the relative accuracy α of the exact lower quantile of those values. The
// window slides a bucket at a time: between boundaries it covers between (buckets − 1)·width
// and buckets·width of time.
// Memory: `buckets` sketches of at most max_bins counters. add() is O(1) amortised; window() is
// O(buckets · bins). A value older than the oldest bucket kept is counted in late(); a NaN,
// infinite or negative value in ignored().
// Errors: the constructor throws std::invalid_argument for width ≤ 0, buckets = 0 or a bad
// sketch parameter. Thread-safety: not thread-safe; one owner.
class windowed_quantile {
 public:
  windowed_quantile(std::int64_t width, std::size_t buckets, double relative_accuracy = 0.01,
                    std::size_t max_bins = 2048)
      : buckets_(width, buckets, quantile_sketch(relative_accuracy, max_bins)),
        prototype_(relative_accuracy, max_bins) {}

  // Adds x observed at time t.
  void add(std::int64_t t, double x) {
    quantile_sketch* s = buckets_.at(t);
    if (s == nullptr) {
      ++late_;
      return;
    }
    const std::uint64_t before = s->ignored();
    s->add(x);
    ignored_ += s->ignored() - before;
  }

  // The merged sketch of the window of `now`.
  quantile_sketch window(std::int64_t now) const {
    quantile_sketch merged = prototype_;
    buckets_.for_each_in_window(now,
                                [&](std::int64_t, const quantile_sketch& s) { merged.merge(s); });
    return merged;
  }

  // The lower q-quantile of the window of `now` (NaN when it holds no value).
  double quantile(std::int64_t now, double q) const { return window(now).quantile(q); }

  // Makes now's bucket the newest, so older buckets fall out of later windows.
  void advance(std::int64_t now) { buckets_.advance(now); }

  void clear() {
    buckets_.clear();
    late_ = 0;
    ignored_ = 0;
  }

  std::uint64_t late() const { return late_; }
  std::uint64_t ignored() const { return ignored_; }
  std::int64_t width() const { return buckets_.width(); }
  std::size_t buckets() const { return buckets_.count(); }

  // The underlying buckets, for snapshots.
  time_buckets<quantile_sketch>& raw() { return buckets_; }
  const time_buckets<quantile_sketch>& raw() const { return buckets_; }

 private:
  time_buckets<quantile_sketch> buckets_;
  quantile_sketch prototype_;
  std::uint64_t late_ = 0;
  std::uint64_t ignored_ = 0;
};

}  // namespace loopwarden::sdk::stats
