#pragma once
// signal_side and direction: the vocabulary the change detectors (ewma_chart, cusum,
// page_hinkley) share for "did this update signal, and on which side".

#include <string_view>

namespace loopwarden::sdk::stats {

// What one update of a change detector concluded. `upper` means the statistic crossed its upper
// limit (the mean went up), `lower` the lower limit (the mean went down). `both` happens only
// for a two-sided detector that does not reset after a signal and is then hit by a large swing
// the other way, so that both one-sided statistics are above their threshold at once.
enum class signal_side { none, upper, lower, both };

// Which changes a one-or-two-sided detector watches for.
enum class direction { increase, decrease, both };

// True unless `side` is none.
constexpr bool signalled(signal_side side) { return side != signal_side::none; }

// True if `side` includes an upper (increase) signal.
constexpr bool signalled_upper(signal_side side) {
  return side == signal_side::upper || side == signal_side::both;
}

// True if `side` includes a lower (decrease) signal.
constexpr bool signalled_lower(signal_side side) {
  return side == signal_side::lower || side == signal_side::both;
}

// Combines a one-sided upper and a one-sided lower verdict into one side.
constexpr signal_side make_signal_side(bool upper, bool lower) {
  if (upper && lower) return signal_side::both;
  if (upper) return signal_side::upper;
  if (lower) return signal_side::lower;
  return signal_side::none;
}

// "none", "upper", "lower" or "both", for logs and breaker evidence.
constexpr std::string_view to_string(signal_side side) {
  switch (side) {
    case signal_side::none:
      return "none";
    case signal_side::upper:
      return "upper";
    case signal_side::lower:
      return "lower";
    case signal_side::both:
      return "both";
  }
  return "unknown";
}

// "increase", "decrease" or "both".
constexpr std::string_view to_string(direction d) {
  switch (d) {
    case direction::increase:
      return "increase";
    case direction::decrease:
      return "decrease";
    case direction::both:
      return "both";
  }
  return "unknown";
}

}  // namespace loopwarden::sdk::stats
