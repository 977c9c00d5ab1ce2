/*
** standardize.h -- per-feature standardisation as a row-wise module without parameters: y = (x - mean) / std,
** column by column. The statistics are fixed at construction (e.g. from the training rows of a fold, see
** core/data/stats.h), so the module never looks at the data it is applied to: no test-fold leakage.
*/
#ifndef RL_STANDARDIZE_H
#define RL_STANDARDIZE_H

#include "module.h"

/* dim >= 1 columns; mean and std hold dim values (copied), all finite, std > 0. NULL (message in rl_error()) on a
** bad argument. */
rl_module *rl_standardize_new(int64_t dim, const real *mean, const real *std);

/* The module's statistics (dim values each, owned by the module); RL_EINVAL if m is not a standardize module. */
int rl_standardize_stats(const rl_module *m, const real **mean, const real **std, int64_t *dim);

#endif
