/*
** setops.h -- per-set building blocks shared by the baseline poolings (mixed, gated_mixed, deepset, set2set,
** gated_attention, dynamic, gnp): sum/max of one set with arg-max rows, the softmax-weighted sum of one set and
** its backward, scalar activations in the exact form the reference layers use, and PyTorch-style initialisers.
** Every per-set function works on rows [lo, hi) of a row-major values matrix of width D, so callers can run
** them in parallel across sets; none allocates.
*/
#ifndef RL_POOL_SETOPS_H
#define RL_POOL_SETOPS_H

#include "../rng.h"
#include "../tensor.h"

/* Run a loop over sets on OpenMP threads only when rows x width reaches this (small batches are faster on one
** thread). */
#define RL_BASELINE_PARALLEL_MIN_WORK 16384

/* Largest number of unrolled iterations (Set2Set steps, dynamic routing k) accepted: memory grows with it. */
#define RL_BASELINE_MAX_STEPS 1000

/* Added to |x| before the logarithm in generalized norm pooling, as the reference does. */
#define RL_GNP_EPS 1e-6

/* The two behaviours of every baseline: the papers' math (default) or the authors' code (compat = "reference"). */
enum { RL_COMPAT_PAPER = 0, RL_COMPAT_REFERENCE = 1 };

/* softplus as torch.nn.Softplus computes it: log(1 + e^r), or r when r > 20. Its derivative is sigmoid(r)
** (1 above the threshold). */
double rl_setop_softplus(double r);
double rl_setop_softplus_grad(double r);
double rl_setop_sigmoid(double r);

/* x (n values) ~ U(-bound, bound), and ~ N(0, 1) (torch.randn). */
void rl_setop_init_uniform(real *x, int64_t n, double bound, rl_rng *g);
void rl_setop_init_normal(real *x, int64_t n, rl_rng *g);

/* Sum and per-feature maximum of rows [lo, hi) (D wide); argmax[d] is the first row attaining the maximum. */
void rl_setop_sum_max(const real *x, int64_t D, int64_t lo, int64_t hi, real *sum, real *max, int64_t *argmax);

/* Softmax over the set of the scores s[lo..hi) into a[lo..hi) (a may alias s), with `eps` added to the
** denominator (0, or RL_SOFTMAX_EPS as the reference's graph softmax), then y (D) = sum_n a_n x_n. */
void rl_setop_softmax_pool(const real *x, int64_t D, int64_t lo, int64_t hi, const real *s, real *a, real *y,
                           double eps);

/* Backward of rl_setop_softmax_pool for one set, given the weights a and gy = dL/dy (D): writes
** gs[lo..hi) = dL/ds_n = a_n (x_n.gy - sum_m a_m x_m.gy) (the max shift and the tiny eps are treated as
** constants, like the reference's detached max), and adds a_n gy to row n of gx when gx is not NULL. */
void rl_setop_softmax_pool_backward(const real *x, int64_t D, int64_t lo, int64_t hi, const real *a,
                                    const real *gy, real *gs, real *gx);

/* Adds dst[r] += sum over rows of src (rows x cols): column sums, for bias gradients. */
void rl_setop_add_colsum(const real *src, int64_t rows, int64_t cols, real *dst);

#endif
