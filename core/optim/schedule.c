/*
** schedule.c -- StepLR and CosineAnnealingWarmRestarts (schedule.h) as closed forms of the epoch.
**
** Cycle boundaries of the warm restarts are found by summing cycle lengths (exact for integer epochs), where
** PyTorch's explicit-epoch path uses int(log(epoch / T_0 (T_mult - 1) + 1, T_mult)); both give the restart
** epochs of PyTorch's sequential step(), but the logarithm can round down at a boundary (T_0 = 1, T_mult = 3,
** epoch 121), which we do not reproduce.
*/
#include <math.h>

#include "schedule.h"

/* Fails unless v is finite and >= 0; the message names the argument. */
static int check_nonnegative(const char *name, double v) {
  if (!isfinite(v)) return rl_fail(RL_EINVAL, "%s must be a finite number, got %g", name, v);
  if (v < 0.0) return rl_fail(RL_EINVAL, "%s must be >= 0, got %g", name, v);
  return RL_OK;
}

int rl_step_lr(double base_lr, int64_t epoch, int64_t step_size, double gamma, double *lr) {
  int rc;
  if ((rc = check_nonnegative("base lr", base_lr))) return rc;
  if (epoch < 0) return rl_fail(RL_EINVAL, "epoch must be >= 0, got %lld", (long long)epoch);
  if (step_size < 1) return rl_fail(RL_EINVAL, "option 'step_size' must be >= 1, got %lld", (long long)step_size);
  if ((rc = check_nonnegative("option 'gamma'", gamma))) return rc;
  *lr = base_lr * pow(gamma, (double)(epoch / step_size));
  return RL_OK;
}

int rl_cosine_warm_restarts(double base_lr, double epoch, int64_t T_0, int64_t T_mult, double eta_min, double *lr,
                            double *T_cur, double *T_i) {
  int rc;
  if ((rc = check_nonnegative("base lr", base_lr))) return rc;
  if ((rc = check_nonnegative("epoch", epoch))) return rc;
  if (T_0 < 1) return rl_fail(RL_EINVAL, "option 'T_0' must be an integer >= 1, got %lld", (long long)T_0);
  if (T_mult < 1) return rl_fail(RL_EINVAL, "option 'T_mult' must be an integer >= 1, got %lld", (long long)T_mult);
  if ((rc = check_nonnegative("option 'eta_min'", eta_min))) return rc;
  double start = 0.0, len = (double)T_0;
  if (T_mult == 1) {
    start = epoch - fmod(epoch, len);
  } else {
    /* Cycle lengths grow geometrically: at most ~log2(DBL_MAX) iterations before len exceeds any finite epoch. */
    while (epoch >= start + len) {
      start += len;
      len *= (double)T_mult;
    }
  }
  double cur = epoch - start;
  *lr = eta_min + (base_lr - eta_min) * (1.0 + cos(M_PI * cur / len)) / 2.0;
  if (T_cur) *T_cur = cur;
  if (T_i) *T_i = len;
  return RL_OK;
}
