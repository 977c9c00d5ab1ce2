/*
** split.h -- seeded partitions of items (sets of a dataset): train/val/test splits by fractions, k-fold
** assignments (stratified like sklearn's StratifiedKFold(shuffle=True)) and shuffled mini-batch orders. Items are
** 0-based; randomness comes only from the rl_rng passed in, so a result is reproducible from its seed.
*/
#ifndef RL_SPLIT_H
#define RL_SPLIT_H

#include "../rl.h"
#include "../rng.h"

/* Parts of a split: train, validation, test. */
enum { RL_SPLIT_TRAIN = 0, RL_SPLIT_VAL = 1, RL_SPLIT_TEST = 2, RL_SPLIT_PARTS = 3 };

/* Tolerance on the sum of the split fractions (which must be 1). */
#define RL_SPLIT_SUM_TOL 1e-6

/* Assigns each of n >= 1 items to a part (part[i] in 0..2) with fractions frac (each >= 0, summing to 1). With
** labels (not NULL) the split is stratified: within every class, the number of items of part p is n_c * frac[p]
** rounded down or up; without labels the same holds for the whole set. The rounding is carried from class to class
** so that the part totals also stay close to n * frac[p]. */
int rl_split_assign(const int64_t *labels, int64_t n, const double *frac, rl_rng *g, int *part);

/* Assigns each of n items to one of k folds (fold[i] in 0..k-1), 2 <= k <= n. With labels, stratified: every class
** is dealt round-robin over the folds in random order, so each fold holds n_c / k items of class c rounded down or
** up and fold sizes differ by at most one (sklearn's StratifiedKFold allocation); every class needs >= k items. */
int rl_kfold_assign(const int64_t *labels, int64_t n, int64_t k, rl_rng *g, int *fold);

/* Order of n positions for mini-batches of batch_size >= 1: identity or a random permutation (shuffle). *nbatches
** is ceil(n / batch_size), or floor with drop_last (the last, smaller batch dropped). */
int rl_batch_order(int64_t n, int64_t batch_size, int shuffle, int drop_last, rl_rng *g, int64_t *order,
                   int64_t *nbatches);

#endif
