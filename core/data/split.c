/*
** split.c -- train/val/test splits, k-fold assignments and mini-batch orders (see split.h). Stratification works on
** "class blocks": the items sorted by label, in random order inside each class. A split cuts every block by the
** fractions (controlled rounding, so per-class and total counts both stay within one of their targets); a k-fold
** deals the blocks round-robin over the folds, which is exactly sklearn's StratifiedKFold allocation.
*/
#include <math.h>
#include <stdlib.h>

#include "split.h"

/* Slack when flooring n_c * frac, so that products like 10 * 0.7 = 7.000000000000001 floor to the intended value. */
#define FLOOR_SLACK 1e-9

typedef struct keyed {
  int64_t label, key, index;
} keyed;

static int cmp_keyed(const void *pa, const void *pb) {
  const keyed *a = pa, *b = pb;
  if (a->label != b->label) return a->label < b->label ? -1 : 1;
  return (a->key > b->key) - (a->key < b->key);
}

/* The items sorted by (label, random key): classes ascending, random order within a class. NULL labels = one class. */
static keyed *class_blocks(const int64_t *labels, int64_t n, rl_rng *g) {
  keyed *k = rl_malloc((size_t)n * sizeof *k);
  int64_t *perm = rl_malloc((size_t)n * sizeof *perm);
  if (!k || !perm) {
    rl_free(k);
    rl_free(perm);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  rl_rng_shuffle(g, perm, n);
  for (int64_t p = 0; p < n; p++) {
    k[p].index = perm[p];
    k[p].key = p;
    k[p].label = labels ? labels[perm[p]] : 0;
  }
  rl_free(perm);
  qsort(k, (size_t)n, sizeof *k, cmp_keyed);
  return k;
}

int rl_split_assign(const int64_t *labels, int64_t n, const double *frac, rl_rng *g, int *part) {
  if (n < 1) return rl_fail(RL_EINVAL, "split: nothing to split (%lld items)", (long long)n);
  static const char *const names[RL_SPLIT_PARTS] = {"train", "val", "test"};
  double sum = 0, f[RL_SPLIT_PARTS];
  for (int s = 0; s < RL_SPLIT_PARTS; s++) {
    if (!(frac[s] >= 0 && frac[s] <= 1))
      return rl_fail(RL_EINVAL, "split: fraction %s must be in [0, 1], got %g", names[s], frac[s]);
    sum += frac[s];
  }
  if (fabs(sum - 1) > RL_SPLIT_SUM_TOL)
    return rl_fail(RL_EINVAL, "split: fractions train + val + test must sum to 1, got %g + %g + %g = %.17g", frac[0],
                   frac[1], frac[2], sum);
  for (int s = 0; s < RL_SPLIT_PARTS; s++) f[s] = frac[s] / sum;
  keyed *k = class_blocks(labels, n, g);
  if (!k) return RL_ENOMEM;
  double carried[RL_SPLIT_PARTS] = {0}; /* target minus assigned, summed over the classes done so far */
  for (int64_t a = 0; a < n;) {
    int64_t b = a;
    while (b < n && k[b].label == k[a].label) b++;
    int64_t m = b - a, cnt[RL_SPLIT_PARTS], rem = m;
    double target[RL_SPLIT_PARTS];
    int bumped[RL_SPLIT_PARTS] = {0};
    for (int s = 0; s < RL_SPLIT_PARTS; s++) {
      target[s] = (double)m * f[s];
      cnt[s] = (int64_t)floor(target[s] + FLOOR_SLACK);
      rem -= cnt[s];
    }
    /* the rem leftover items go to distinct parts (each at most one), those furthest behind their target */
    for (; rem > 0; rem--) {
      int best = -1;
      double best_gap = -INFINITY;
      for (int s = 0; s < RL_SPLIT_PARTS; s++) {
        double gap = carried[s] + target[s] - (double)cnt[s];
        if (f[s] > 0 && !bumped[s] && gap > best_gap) {
          best = s;
          best_gap = gap;
        }
      }
      if (best < 0) break; /* cannot happen: rem < number of parts with a positive fraction */
      cnt[best]++;
      bumped[best] = 1;
    }
    for (int s = 0; s < RL_SPLIT_PARTS; s++) carried[s] += target[s] - (double)cnt[s];
    int64_t p = a;
    for (int s = 0; s < RL_SPLIT_PARTS; s++)
      for (int64_t j = 0; j < cnt[s] && p < b; j++) part[k[p++].index] = s;
    while (p < b) part[k[p++].index] = RL_SPLIT_TRAIN; /* unreachable safety net */
    a = b;
  }
  rl_free(k);
  return RL_OK;
}

int rl_kfold_assign(const int64_t *labels, int64_t n, int64_t k, rl_rng *g, int *fold) {
  if (k < 2) return rl_fail(RL_EINVAL, "kfold: k must be at least 2, got %lld", (long long)k);
  if (k > n) return rl_fail(RL_EINVAL, "kfold: k = %lld is more than the %lld items", (long long)k, (long long)n);
  keyed *order = class_blocks(labels, n, g);
  if (!order) return RL_ENOMEM;
  if (labels) {
    for (int64_t a = 0; a < n;) {
      int64_t b = a;
      while (b < n && order[b].label == order[a].label) b++;
      if (b - a < k) {
        int64_t label = order[a].label, size = b - a;
        rl_free(order);
        return rl_fail(RL_EINVAL, "kfold: k = %lld is more than the %lld member%s of class %lld (stratified k-fold "
                       "needs at least k items per class)", (long long)k, (long long)size, size == 1 ? "" : "s",
                       (long long)label);
      }
      a = b;
    }
  }
  for (int64_t p = 0; p < n; p++) fold[order[p].index] = (int)(p % k);
  rl_free(order);
  return RL_OK;
}

int rl_batch_order(int64_t n, int64_t batch_size, int shuffle, int drop_last, rl_rng *g, int64_t *order,
                   int64_t *nbatches) {
  if (n < 0) return rl_fail(RL_EINVAL, "batches: negative item count %lld", (long long)n);
  if (batch_size < 1) return rl_fail(RL_EINVAL, "batches: batch_size must be at least 1, got %lld", (long long)batch_size);
  for (int64_t i = 0; i < n; i++) order[i] = i;
  if (shuffle) rl_rng_shuffle(g, order, n);
  *nbatches = drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
  return RL_OK;
}
