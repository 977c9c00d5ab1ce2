/*
** adam.c -- the Adam / AdamW update of adam.h (PyTorch semantics, single-tensor path, non-capturable).
*/
#include <math.h>

#include "adam.h"

rl_adam_config rl_adam_defaults(void) {
  rl_adam_config c = {1e-3, 0.9, 0.999, 1e-8, 0.0, 0, 0};
  return c;
}

rl_adam_config rl_adamw_defaults(void) {
  rl_adam_config c = {1e-3, 0.9, 0.999, 1e-8, 1e-2, 0, 1};
  return c;
}

/* Fails unless v is finite and >= min; the message names the option. */
static int check_at_least(const char *name, double v, double min) {
  if (!isfinite(v)) return rl_fail(RL_EINVAL, "option '%s' must be a finite number, got %g", name, v);
  if (v < min) return rl_fail(RL_EINVAL, "option '%s' must be >= %g, got %g", name, min, v);
  return RL_OK;
}

int rl_adam_check(const rl_adam_config *cfg) {
  int rc;
  if ((rc = check_at_least("lr", cfg->lr, 0.0))) return rc;
  if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0))
    return rl_fail(RL_EINVAL, "option 'betas': beta1 must be in [0, 1), got %g", cfg->beta1);
  if (!(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
    return rl_fail(RL_EINVAL, "option 'betas': beta2 must be in [0, 1), got %g", cfg->beta2);
  if ((rc = check_at_least("eps", cfg->eps, 0.0))) return rc;
  if ((rc = check_at_least("weight_decay", cfg->weight_decay, 0.0))) return rc;
  return RL_OK;
}

int rl_adam_step(int64_t n, real *param, const real *grad, real *exp_avg, real *exp_avg_sq, real *max_exp_avg_sq,
                 const rl_adam_config *cfg, int64_t step) {
  int rc = rl_adam_check(cfg);
  if (rc) return rc;
  const char *name = cfg->decoupled ? "adamw" : "adam";
  if (n < 0) return rl_fail(RL_EINVAL, "%s: negative number of values (%lld)", name, (long long)n);
  if (step < 1) return rl_fail(RL_EINVAL, "%s: step index must be >= 1, got %lld", name, (long long)step);
  if (cfg->amsgrad && !max_exp_avg_sq) return rl_fail(RL_EINVAL, "%s: amsgrad needs a max_exp_avg_sq buffer", name);
  const double lr = cfg->lr, wd = cfg->weight_decay, b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps;
  /* PyTorch: step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps. */
  const double bc1 = 1.0 - pow(b1, (double)step), bc2_sqrt = sqrt(1.0 - pow(b2, (double)step));
  const double step_size = lr / bc1, decay = 1.0 - lr * wd;
  for (int64_t i = 0; i < n; i++) {
    double p = (double)param[i], g = (double)grad[i];
    if (cfg->decoupled)
      p *= decay;
    else
      g += wd * p;
    double m = b1 * (double)exp_avg[i] + (1.0 - b1) * g;
    double v = b2 * (double)exp_avg_sq[i] + (1.0 - b2) * g * g;
    exp_avg[i] = (real)m;
    exp_avg_sq[i] = (real)v;
    if (cfg->amsgrad) {
      double vmax = (double)max_exp_avg_sq[i];
      if (v > vmax) vmax = v;
      max_exp_avg_sq[i] = (real)vmax;
      v = vmax;
    }
    param[i] = (real)(p - step_size * m / (sqrt(v) / bc2_sqrt + eps));
  }
  return RL_OK;
}
