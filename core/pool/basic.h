/*
** basic.h -- the parameter-free set poolings: add (sum), mean and max over the rows of each set (level 0 of
** the batch). Output: one row per set, same width.
*/
#ifndef RL_POOL_BASIC_H
#define RL_POOL_BASIC_H

#include "../nn/module.h"

/* dim = the expected input width, or -1 to accept any width. NULL (message in rl_error()) if dim < -1 or 0. */
rl_module *rl_pool_add_new(int64_t dim);
rl_module *rl_pool_mean_new(int64_t dim);
/* Per feature maximum; backward routes each output gradient to the arg-max row (the first one on ties). */
rl_module *rl_pool_max_new(int64_t dim);

/* Parallelise a per-set loop over OpenMP threads only when rows x width reaches this (smaller batches run
** faster on one thread). Shared by the poolings in core/pool/. */
#define RL_POOL_PARALLEL_MIN_WORK 16384

#endif
