#pragma once
// The SDK's header-only streaming statistics, for plugin authors: include this one header, or
// the single header of the concept you need. Everything lives in loopwarden::sdk::stats and is not
// thread-safe (one owner per object). The scalar statistics depend only on the standard library
// and update in O(1) without allocating; diversity and tail_mass use hash maps and sorted
// baselines, dispersion uses Eigen (O(d²) per d-dimensional vector). See docs/statistics.md for
// the formulas, costs, parameters and references.

#include <loopwarden/stats/cosine.hpp>        // cosine similarity, embedding-set cosine distances
#include <loopwarden/stats/amdahl.hpp>        // Amdahl speed-up, ceiling, and their inverses
#include <loopwarden/stats/cusum.hpp>         // two-sided tabular CUSUM
#include <loopwarden/stats/cycle_detector.hpp>  // shortest period of a repeating sequence tail
#include <loopwarden/stats/dispersion.hpp>    // embedding mean/covariance, Vendi score, effective rank
#include <loopwarden/stats/distribution.hpp>  // normal quantile, binomial and beta-binomial tails
#include <loopwarden/stats/divergence.hpp>    // KL, Jensen-Shannon, PSI; histograms; bootstrap thresholds
#include <loopwarden/stats/diversity.hpp>     // distinct-n, entropy, Gini-Simpson with O(1) updates
#include <loopwarden/stats/ewma.hpp>          // EWMA mean/variance, EWMA control chart
#include <loopwarden/stats/gram.hpp>          // streaming Gram matrix: Vendi scores, effective rank
#include <loopwarden/stats/page_hinkley.hpp>  // Page-Hinkley change-in-mean test
#include <loopwarden/stats/set_overlap.hpp>   // Jaccard and weighted Jaccard on keys and n-grams
#include <loopwarden/stats/quantile_sketch.hpp>  // relative-error quantiles in bounded memory
#include <loopwarden/stats/refit_recursion.hpp>  // exact expected dispersion of a refit on a real-data mix
#include <loopwarden/stats/queueing.hpp>      // M/M/1, Little's law, net-flow growth test
#include <loopwarden/stats/signal.hpp>        // signal_side, direction
#include <loopwarden/stats/sparse_histogram.hpp>  // sparse histograms on shared keys; JS in bits
#include <loopwarden/stats/tail_mass.hpp>     // share of samples beyond baseline quantiles
#include <loopwarden/stats/time_buckets.hpp>  // sliding time window of per-bucket summaries
#include <loopwarden/stats/trend.hpp>         // windowed line fit, generations until a floor
#include <loopwarden/stats/welford.hpp>       // running count, mean, variance, min, max
#include <loopwarden/stats/window_histogram.hpp>  // categorical counts over the last W slots
#include <loopwarden/stats/windowed_quantile.hpp>  // quantiles over a sliding time window
