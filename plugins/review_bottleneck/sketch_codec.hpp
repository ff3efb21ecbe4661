#pragma once
// Snapshot encoding of a stats::quantile_sketch on the SDK's state_writer / state_reader.

#include <loopwarden/state_codec.hpp>
#include <loopwarden/stats/quantile_sketch.hpp>

namespace loopwarden::plugins::review_bottleneck {

inline void write_sketch(sdk::state_writer& w, const sdk::stats::quantile_sketch& s) {
  const auto st = s.export_state();
  w.write_f64(st.relative_accuracy);
  w.write_u64(st.max_bins);
  w.write_f64(st.min_value);
  w.write_i64(st.offset);
  w.write_u64s(st.counts);
  w.write_u64(st.zero_count);
  w.write_u64(st.count);
  w.write_f64(st.sum);
  w.write_f64(st.min);
  w.write_f64(st.max);
  w.write_u64(st.ignored);
  w.write_u64(st.collapsed);
}

// Reads a sketch into `out`; a sketch of another accuracy or bin limit than `out`'s, or one that
// does not add up, fails the reader and leaves `out` alone.
inline void read_sketch(sdk::state_reader& r, sdk::stats::quantile_sketch& out) {
  sdk::stats::quantile_sketch_state st;
  st.relative_accuracy = r.read_f64();
  st.max_bins = r.read_count(1u << 20);
  st.min_value = r.read_f64();
  st.offset = r.read_i64();
  st.counts = r.read_u64s(st.max_bins);
  st.zero_count = r.read_u64();
  st.count = r.read_u64();
  st.sum = r.read_f64();
  st.min = r.read_f64();
  st.max = r.read_f64();
  st.ignored = r.read_u64();
  st.collapsed = r.read_u64();
  if (!r.ok()) return;
  // Sketches merge only with sketches of the same accuracy: refuse any other.
  if (st.relative_accuracy != out.relative_accuracy() || st.max_bins != out.max_bins()) {
    r.fail("a quantile sketch of another accuracy");
    return;
  }
  if (!out.import_state(st)) r.fail("an inconsistent quantile sketch");
}

}  // namespace loopwarden::plugins::review_bottleneck
