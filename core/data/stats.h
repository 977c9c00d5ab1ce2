/*
** stats.h -- per-feature statistics of the rows of chosen sets of a dataset, e.g. the training fold's rows for
** standardisation (core/nn/standardize.h) computed without looking at the test fold.
*/
#ifndef RL_STATS_H
#define RL_STATS_H

#include "dataset.h"

/* A column whose standard deviation is at most this fraction of max(1, |mean|) counts as constant: its std is
** reported as 1, so standardising centres it and never divides by (nearly) zero. */
#define RL_STATS_CONSTANT_REL 1e-12

/* Mean and population standard deviation (divisor = number of rows) of every column of ds->X over the rows of the
** sets with the given 0-based indices (n >= 1, each checked; a set listed twice counts twice). mean and std receive
** ds->dim values. Double accumulators, two passes. */
int rl_dataset_feature_stats(const rl_dataset *ds, const int64_t *sets, int64_t n, real *mean, real *std);

#endif
