/*
** sets.c -- validation of ragged batches.
*/
#include "sets.h"

int rl_offsets_check(const int64_t *off, int64_t count, int64_t total, const char *what) {
  if (count < 1) return rl_fail(RL_EINVAL, "%s: a batch needs at least one set, got %lld", what, (long long)count);
  if (off[0] != 0) return rl_fail(RL_EINVAL, "%s: offsets must start at 0, got %lld", what, (long long)off[0]);
  for (int64_t i = 0; i < count; i++) {
    if (off[i + 1] < off[i])
      return rl_fail(RL_EINVAL, "%s: offsets must be non-decreasing, but offsets[%lld] = %lld < offsets[%lld] = %lld",
                     what, (long long)(i + 1), (long long)off[i + 1], (long long)i, (long long)off[i]);
    if (off[i + 1] == off[i])
      return rl_fail(RL_EINVAL, "%s: set %lld is empty (offsets[%lld] = offsets[%lld] = %lld); empty sets are not allowed",
                     what, (long long)(i + 1), (long long)i, (long long)(i + 1), (long long)off[i]);
  }
  if (off[count] != total)
    return rl_fail(RL_EINVAL, "%s: last offset must equal the number of rows %lld, got %lld", what, (long long)total,
                   (long long)off[count]);
  return RL_OK;
}

int rl_batch_check(const rl_batch *b) {
  if (b->nlevels < 0 || b->nlevels > RL_MAX_LEVELS)
    return rl_fail(RL_EINVAL, "batch: nesting depth must be 0..%d, got %d", RL_MAX_LEVELS, b->nlevels);
  int64_t total = rl_rows(&b->values);
  for (int k = 0; k < b->nlevels; k++) {
    int rc = rl_offsets_check(b->offsets[k], b->count[k], total, k == 0 ? "set offsets" : "group offsets");
    if (rc) return rc;
    total = b->count[k];
  }
  return RL_OK;
}

int rl_expect_sets(const rl_batch *b, int64_t cols, const char *what) {
  if (b->nlevels < 1)
    return rl_fail(RL_EINVAL, "%s: expected a batch of sets (rl.sets), got plain rows without offsets", what);
  return rl_expect_matrix(&b->values, -1, cols, what);
}
