/*
** clip.c -- global L2-norm gradient clipping (clip.h). Sums of squares accumulate in double.
*/
#include <math.h>

#include "clip.h"

int rl_clip_grad_norm(int64_t count, real *const *grads, const int64_t *sizes, double max_norm, double *total_norm) {
  if (!isfinite(max_norm) || max_norm < 0.0)
    return rl_fail(RL_EINVAL, "max_norm must be a finite number >= 0, got %g", max_norm);
  if (count < 0) return rl_fail(RL_EINVAL, "clip_grad_norm: negative number of arrays (%lld)", (long long)count);
  double sumsq = 0.0;
  for (int64_t k = 0; k < count; k++) {
    if (sizes[k] < 0) return rl_fail(RL_EINVAL, "clip_grad_norm: array %lld has a negative size", (long long)k + 1);
    const real *g = grads[k];
    for (int64_t i = 0; i < sizes[k]; i++) sumsq += (double)g[i] * (double)g[i];
  }
  double total = sqrt(sumsq);
  *total_norm = total;
  if (!isfinite(total)) return RL_OK;
  double coef = max_norm / (total + RL_CLIP_EPS);
  if (coef < 1.0)
    for (int64_t k = 0; k < count; k++) {
      real *g = grads[k];
      for (int64_t i = 0; i < sizes[k]; i++) g[i] = (real)((double)g[i] * coef);
    }
  return RL_OK;
}
