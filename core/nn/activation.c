/*
** activation.c -- elementwise activations. Backward recomputes the local derivative from the input of the
** last forward (the wrappers guarantee it is the same batch), so no cache is needed.
*/
#include <math.h>

#include "activation.h"

typedef enum { ACT_RELU, ACT_ELU, ACT_TANH, ACT_SIGMOID, ACT_SOFTPLUS } act_kind;

typedef struct activation {
  rl_module base;
  act_kind kind;
  double alpha;              /* ELU */
  double beta, threshold;    /* Softplus */
} activation;

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

static int act_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  int rc = rl_expect_matrix(&in->values, -1, -1, m->ops->kind);
  if (rc) return rc;
  *cols = rl_cols(&in->values);
  return RL_OK;
}

static int act_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  const activation *a = (const activation *)m;
  const real *x = in->values.data;
  real *y = out->data;
  int64_t n = in->values.numel;
  switch (a->kind) {
  case ACT_RELU:
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
    break;
  case ACT_ELU:
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : (real)(a->alpha * expm1((double)x[i]));
    break;
  case ACT_TANH:
    for (int64_t i = 0; i < n; i++) y[i] = (real)tanh((double)x[i]);
    break;
  case ACT_SIGMOID:
    for (int64_t i = 0; i < n; i++) y[i] = (real)sigmoid((double)x[i]);
    break;
  case ACT_SOFTPLUS:
    for (int64_t i = 0; i < n; i++) {
      double bx = a->beta * x[i];
      y[i] = bx > a->threshold ? x[i] : (real)(log1p(exp(bx)) / a->beta);
    }
    break;
  }
  return RL_OK;
}

static int act_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  const activation *a = (const activation *)m;
  if (!grad_in) return RL_OK; /* no parameters */
  const real *x = in->values.data, *gy = grad_out->data;
  real *gx = grad_in->data;
  int64_t n = in->values.numel;
  switch (a->kind) {
  case ACT_RELU:
    for (int64_t i = 0; i < n; i++) gx[i] = x[i] > 0 ? gy[i] : 0;
    break;
  case ACT_ELU:
    for (int64_t i = 0; i < n; i++) gx[i] = x[i] > 0 ? gy[i] : (real)(gy[i] * a->alpha * exp((double)x[i]));
    break;
  case ACT_TANH:
    for (int64_t i = 0; i < n; i++) {
      double t = tanh((double)x[i]);
      gx[i] = (real)(gy[i] * (1.0 - t * t));
    }
    break;
  case ACT_SIGMOID:
    for (int64_t i = 0; i < n; i++) {
      double s = sigmoid((double)x[i]);
      gx[i] = (real)(gy[i] * s * (1.0 - s));
    }
    break;
  case ACT_SOFTPLUS:
    for (int64_t i = 0; i < n; i++) {
      double bx = a->beta * x[i];
      gx[i] = bx > a->threshold ? gy[i] : (real)(gy[i] * sigmoid(bx));
    }
    break;
  }
  return RL_OK;
}

static const rl_module_ops relu_ops = {"relu", act_out_cols, act_forward, act_backward, NULL};
static const rl_module_ops elu_ops = {"elu", act_out_cols, act_forward, act_backward, NULL};
static const rl_module_ops tanh_ops = {"tanh", act_out_cols, act_forward, act_backward, NULL};
static const rl_module_ops sigmoid_ops = {"sigmoid", act_out_cols, act_forward, act_backward, NULL};
static const rl_module_ops softplus_ops = {"softplus", act_out_cols, act_forward, act_backward, NULL};

static activation *act_new(const rl_module_ops *ops, act_kind kind) {
  activation *a = rl_calloc(1, sizeof *a);
  if (!a) return NULL;
  rl_module_init(&a->base, ops, 0);
  a->kind = kind;
  return a;
}

rl_module *rl_relu_new(void) {
  activation *a = act_new(&relu_ops, ACT_RELU);
  return a ? &a->base : NULL;
}

rl_module *rl_elu_new(real alpha) {
  if (!isfinite(alpha)) {
    rl_fail(RL_EINVAL, "elu: alpha must be finite, got %g", (double)alpha);
    return NULL;
  }
  activation *a = act_new(&elu_ops, ACT_ELU);
  if (!a) return NULL;
  a->alpha = alpha;
  return &a->base;
}

rl_module *rl_tanh_new(void) {
  activation *a = act_new(&tanh_ops, ACT_TANH);
  return a ? &a->base : NULL;
}

rl_module *rl_sigmoid_new(void) {
  activation *a = act_new(&sigmoid_ops, ACT_SIGMOID);
  return a ? &a->base : NULL;
}

rl_module *rl_softplus_new(real beta, real threshold) {
  if (!(beta > 0) || !isfinite(beta)) {
    rl_fail(RL_EINVAL, "softplus: beta must be a positive finite number, got %g", (double)beta);
    return NULL;
  }
  if (!isfinite(threshold)) {
    rl_fail(RL_EINVAL, "softplus: threshold must be finite, got %g", (double)threshold);
    return NULL;
  }
  activation *a = act_new(&softplus_ops, ACT_SOFTPLUS);
  if (!a) return NULL;
  a->beta = beta;
  a->threshold = threshold;
  return &a->base;
}
