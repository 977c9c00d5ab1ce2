/*
** rng.c -- xoshiro256** (Blackman & Vigna), splitmix64 seeding, uniform/normal draws, shuffling.
*/
#include <math.h>

#include "rng.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rl_rng_seed(rl_rng *g, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&x);
  g->has_spare = 0;
  g->spare_normal = 0;
}

uint64_t rl_rng_u64(rl_rng *g) {
  uint64_t *s = g->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double rl_rng_uniform(rl_rng *g) { return (double)(rl_rng_u64(g) >> 11) * 0x1.0p-53; }

double rl_rng_normal(rl_rng *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare_normal;
  }
  double u1, u2;
  do u1 = rl_rng_uniform(g); while (u1 <= 0.0);
  u2 = rl_rng_uniform(g);
  double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
  g->spare_normal = r * sin(a);
  g->has_spare = 1;
  return r * cos(a);
}

uint64_t rl_rng_below(rl_rng *g, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the top partial bucket: no modulo bias */
  uint64_t x;
  do x = rl_rng_u64(g); while (x >= limit);
  return x % n;
}

void rl_rng_shuffle(rl_rng *g, int64_t *v, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)rl_rng_below(g, (uint64_t)i + 1);
    int64_t t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}
