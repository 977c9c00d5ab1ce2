/*
** sets.h -- ragged batches: values (total_rows x D) plus offset levels. Level 0 splits rows into sets
** (offsets[0] has count[0]+1 entries, ending at the row count); level 1 splits sets into groups (set-of-sets),
** ending at count[0]; and so on. No padding anywhere. A pooling consumes level 0: its output has one row per set
** and the batch's remaining levels shift down by one.
*/
#ifndef RL_SETS_H
#define RL_SETS_H

#include "tensor.h"

typedef struct rl_batch {
  rl_tensor values;                       /* rows x D */
  int nlevels;                            /* 0: plain rows; 1: sets; 2: groups of sets */
  const int64_t *offsets[RL_MAX_LEVELS];  /* offsets[k] has count[k] + 1 entries */
  int64_t count[RL_MAX_LEVELS];           /* number of sets (k = 0), groups (k = 1), ... */
} rl_batch;

/* Checks one offsets array: starts at 0, strictly increasing (no empty set), ends at total. */
int rl_offsets_check(const int64_t *offsets, int64_t count, int64_t total, const char *what);

/* Checks every level of a batch against its values. */
int rl_batch_check(const rl_batch *b);

/* Fails unless the batch has at least one level of sets (what = caller name for the message). */
int rl_expect_sets(const rl_batch *b, int64_t cols, const char *what);

/* Size of set s at level 0. */
static inline int64_t rl_set_size(const rl_batch *b, int64_t s) { return b->offsets[0][s + 1] - b->offsets[0][s]; }

#endif
