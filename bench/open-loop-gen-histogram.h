/*
 * The open-loop generator's latency histogram (bench/open-loop-gen.c includes it): log-linear buckets,
 * 2^SUB_BITS per power of two, so a value is recorded within 0.1 % and the percentiles read as
 * HdrHistogram's do (the highest value of the bucket the percentile falls in, capped at the maximum).
 * Values are nanoseconds; percentiles and the summary are printed in microseconds.
 */
#ifndef OPEN_LOOP_GEN_HISTOGRAM_H
#define OPEN_LOOP_GEN_HISTOGRAM_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#define SUB_BITS 10
#define SUB (1 << SUB_BITS)
#define BUCKETS ((64 - SUB_BITS + 1) * SUB)

typedef struct {
  uint64_t counts[BUCKETS];
  uint64_t total, max, sum;
} histogram;

static int bucket_of(uint64_t v) {
  if (v < 2 * SUB) return (int)v;
  int shift = 63 - __builtin_clzll(v) - SUB_BITS;
  return shift * SUB + (int)(v >> shift);
}

/* The highest value a bucket holds (what HdrHistogram reports for a percentile). */
static uint64_t bucket_high(int i) {
  if (i < 2 * SUB) return (uint64_t)i;
  int shift = i / SUB - 1;
  return ((uint64_t)(i - shift * SUB) << shift) + ((uint64_t)1 << shift) - 1;
}

static void record(histogram *h, int64_t ns) {
  uint64_t v = ns > 0 ? (uint64_t)ns : 0;
  h->counts[bucket_of(v)]++;
  h->total++;
  h->sum += v;
  if (v > h->max) h->max = v;
}

static double percentile_us(const histogram *h, double q) {
  if (h->total == 0) return 0;
  uint64_t target = (uint64_t)ceil(q * (double)h->total), seen = 0;
  if (target == 0) target = 1;
  for (int i = 0; i < BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= target) {
      uint64_t v = bucket_high(i);
      return (double)(v < h->max ? v : h->max) / 1000.0;
    }
  }
  return (double)h->max / 1000.0;
}

static void print_summary(const char *name, const histogram *h) {
  printf("\"%s\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"mean\":%.1f}", name,
         percentile_us(h, 0.5), percentile_us(h, 0.9), percentile_us(h, 0.99), percentile_us(h, 0.999),
         (double)h->max / 1000.0, h->total ? (double)h->sum / (double)h->total / 1000.0 : 0.0);
}

#endif
