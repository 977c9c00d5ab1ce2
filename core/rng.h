/*
** rng.h -- a seeded pseudo-random generator (xoshiro256**, seeded through splitmix64). It is passed explicitly to
** whatever needs randomness, so a run is reproducible from its seed.
*/
#ifndef RL_RNG_H
#define RL_RNG_H

#include <stdint.h>

typedef struct rl_rng {
  uint64_t s[4];
  double spare_normal;
  int has_spare;
} rl_rng;

void rl_rng_seed(rl_rng *g, uint64_t seed);
uint64_t rl_rng_u64(rl_rng *g);
double rl_rng_uniform(rl_rng *g);          /* [0, 1) with 53 random bits */
double rl_rng_normal(rl_rng *g);           /* standard normal (Box-Muller) */
uint64_t rl_rng_below(rl_rng *g, uint64_t n); /* uniform in [0, n), unbiased; n > 0 */
void rl_rng_shuffle(rl_rng *g, int64_t *v, int64_t n); /* Fisher-Yates */

#endif
