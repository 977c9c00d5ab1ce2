/*
** sgd.c -- the SGD update of sgd.h (PyTorch torch.optim.SGD semantics, single-tensor path).
*/
#include <math.h>

#include "sgd.h"

rl_sgd_config rl_sgd_defaults(void) {
  rl_sgd_config c = {1e-3, 0.0, 0.0, 0.0, 0};
  return c;
}

/* Fails unless v is finite and >= min; the message names the option. */
static int check_at_least(const char *name, double v, double min) {
  if (!isfinite(v)) return rl_fail(RL_EINVAL, "option '%s' must be a finite number, got %g", name, v);
  if (v < min) return rl_fail(RL_EINVAL, "option '%s' must be >= %g, got %g", name, min, v);
  return RL_OK;
}

int rl_sgd_check(const rl_sgd_config *cfg) {
  int rc;
  if ((rc = check_at_least("lr", cfg->lr, 0.0))) return rc;
  if ((rc = check_at_least("momentum", cfg->momentum, 0.0))) return rc;
  if (!isfinite(cfg->dampening))
    return rl_fail(RL_EINVAL, "option 'dampening' must be a finite number, got %g", cfg->dampening);
  if ((rc = check_at_least("weight_decay", cfg->weight_decay, 0.0))) return rc;
  if (cfg->nesterov && (cfg->momentum <= 0.0 || cfg->dampening != 0.0))
    return rl_fail(RL_EINVAL,
                   "option 'nesterov' requires momentum > 0 and dampening = 0 (got momentum %g, dampening %g)",
                   cfg->momentum, cfg->dampening);
  return RL_OK;
}

int rl_sgd_step(int64_t n, real *param, const real *grad, real *momentum_buf, const rl_sgd_config *cfg,
                int64_t step) {
  int rc = rl_sgd_check(cfg);
  if (rc) return rc;
  if (n < 0) return rl_fail(RL_EINVAL, "sgd: negative number of values (%lld)", (long long)n);
  if (step < 1) return rl_fail(RL_EINVAL, "sgd: step index must be >= 1, got %lld", (long long)step);
  int use_momentum = cfg->momentum != 0.0;
  if (use_momentum && !momentum_buf)
    return rl_fail(RL_EINVAL, "sgd: momentum %g needs a momentum buffer", cfg->momentum);
  const double lr = cfg->lr, wd = cfg->weight_decay, mu = cfg->momentum, keep = 1.0 - cfg->dampening;
  for (int64_t i = 0; i < n; i++) {
    double g = (double)grad[i] + wd * (double)param[i];
    if (use_momentum) {
      double buf = step == 1 ? g : mu * (double)momentum_buf[i] + keep * g;
      momentum_buf[i] = (real)buf;
      g = cfg->nesterov ? g + mu * buf : buf;
    }
    param[i] = (real)((double)param[i] - lr * g);
  }
  return RL_OK;
}
