#pragma once
// The SDK's header-only streaming statistics, for plugin authors: include this one header, or
// the single header of the concept you need. Everything lives in loopwarden::sdk::stats, depends
// only on the standard library, updates in O(1) without allocating, and is not thread-safe (one
// owner per object). See docs/statistics.md for the formulas, parameters and references.

#include <loopwarden/stats/cusum.hpp>         // two-sided tabular CUSUM
#include <loopwarden/stats/ewma.hpp>          // EWMA mean/variance, EWMA control chart
#include <loopwarden/stats/page_hinkley.hpp>  // Page-Hinkley change-in-mean test
#include <loopwarden/stats/signal.hpp>        // signal_side, direction
#include <loopwarden/stats/welford.hpp>       // running count, mean, variance, min, max
