/*
** primal_dual.c -- projected slack and dual updates (see primal_dual.h).
*/
#include <math.h>

#include "primal_dual.h"

int rl_slack_step(real *u, const real *lambda, int64_t n, double alpha, double lr) {
  if (!(alpha >= 0) || !isfinite(alpha))
    return rl_fail(RL_EINVAL, "slack step: alpha must be a finite number >= 0, got %g", alpha);
  if (!(lr >= 0) || !isfinite(lr))
    return rl_fail(RL_EINVAL, "slack step: learning rate must be a finite number >= 0, got %g", lr);
  for (int64_t i = 0; i < n; i++) {
    double v = (double)u[i] - lr * (alpha * (double)u[i] - (double)lambda[i]);
    u[i] = (real)(v > 0 ? v : 0);
  }
  return RL_OK;
}

int rl_dual_step(real *lambda, const real *g, const real *eps, const real *u, int64_t n, double lr) {
  if (!(lr >= 0) || !isfinite(lr))
    return rl_fail(RL_EINVAL, "dual step: learning rate must be a finite number >= 0, got %g", lr);
  for (int64_t i = 0; i < n; i++) {
    double v = (double)lambda[i] + lr * ((double)g[i] - (double)eps[i] - (u ? (double)u[i] : 0.0));
    lambda[i] = (real)(v > 0 ? v : 0);
  }
  return RL_OK;
}
