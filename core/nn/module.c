/*
** module.c -- parameter bookkeeping and the checked forward/backward entry points of rl_module.
*/
#include <stdio.h>
#include <string.h>

#include "module.h"

void rl_module_init(rl_module *m, const rl_module_ops *ops, int pools) {
  m->ops = ops;
  m->pools = pools;
  m->training = 1;
  m->nparams = 0;
  m->has_forward = 0;
}

rl_param *rl_module_add_param(rl_module *m, const char *name, int ndim, const int64_t *shape) {
  if (m->nparams >= RL_MAX_PARAMS) {
    rl_fail(RL_EINVAL, "%s: too many parameters (RL_MAX_PARAMS = %d)", m->ops->kind, RL_MAX_PARAMS);
    return NULL;
  }
  int64_t n;
  if (rl_shape_check(ndim, shape, &n)) return NULL;
  real *v = rl_calloc((size_t)n, sizeof(real));
  real *g = v ? rl_calloc((size_t)n, sizeof(real)) : NULL;
  if (!v || !g) {
    rl_free(v);
    return NULL;
  }
  rl_param *p = &m->params[m->nparams++];
  snprintf(p->name, sizeof p->name, "%s", name);
  p->value.data = v;
  p->grad.data = g;
  p->value.ndim = p->grad.ndim = ndim;
  for (int i = 0; i < RL_MAX_DIMS; i++) p->value.shape[i] = p->grad.shape[i] = i < ndim ? shape[i] : 0;
  p->value.numel = p->grad.numel = n;
  return p;
}

rl_param *rl_module_param(rl_module *m, const char *name) {
  for (int i = 0; i < m->nparams; i++)
    if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
  return NULL;
}

int rl_module_out_shape(const rl_module *m, const rl_batch *in, int64_t *rows, int64_t *cols) {
  int rc = rl_batch_check(in);
  if (rc) return rc;
  if (m->pools && in->nlevels < 1)
    return rl_fail(RL_EINVAL, "%s: expected a batch of sets (values + offsets), got plain rows", m->ops->kind);
  if (m->pools > 1 && in->nlevels < m->pools)
    return rl_fail(RL_EINVAL, "%s: expected a batch of groups of sets (rl.groups(sets, group_offsets)), got %d "
                   "level(s) of offsets where %d are needed", m->ops->kind, in->nlevels, m->pools);
  rc = m->ops->out_cols(m, in, cols);
  if (rc) return rc;
  *rows = m->pools ? in->count[m->pools - 1] : rl_rows(&in->values);
  return RL_OK;
}

int rl_module_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  int64_t rows, cols;
  int rc = rl_module_out_shape(m, in, &rows, &cols);
  if (rc) return rc;
  rc = rl_expect_matrix(out, rows, cols, "forward output");
  if (rc) return rc;
  m->has_forward = 0;
  rc = m->ops->forward(m, in, out);
  if (rc) return rc;
  m->has_forward = 1;
  m->forward_rows = rl_rows(&in->values);
  m->forward_cols = rl_cols(&in->values);
  m->forward_sets = in->nlevels ? in->count[0] : 0;
  return RL_OK;
}

int rl_module_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  if (!m->has_forward)
    return rl_fail(RL_ESTATE, "%s: backward called before forward (call forward on the same batch first)",
                   m->ops->kind);
  if (rl_rows(&in->values) != m->forward_rows || rl_cols(&in->values) != m->forward_cols ||
      (in->nlevels ? in->count[0] : 0) != m->forward_sets)
    return rl_fail(RL_ESTATE, "%s: backward input is not the batch of the last forward (%lld x %lld, %lld sets)",
                   m->ops->kind, (long long)m->forward_rows, (long long)m->forward_cols, (long long)m->forward_sets);
  int64_t rows, cols;
  int rc = rl_module_out_shape(m, in, &rows, &cols);
  if (rc) return rc;
  rc = rl_expect_matrix(grad_out, rows, cols, "gradient of the output");
  if (rc) return rc;
  if (grad_in) {
    rc = rl_expect_matrix(grad_in, rl_rows(&in->values), rl_cols(&in->values), "gradient of the input");
    if (rc) return rc;
  }
  return m->ops->backward(m, in, grad_out, grad_in);
}

void rl_module_zero_grad(rl_module *m) {
  for (int i = 0; i < m->nparams; i++) rl_fill(m->params[i].grad.data, m->params[i].grad.numel, 0);
}

void rl_module_free(rl_module *m) {
  if (!m) return;
  if (m->ops && m->ops->destroy) m->ops->destroy(m);
  for (int i = 0; i < m->nparams; i++) {
    rl_free(m->params[i].value.data);
    rl_free(m->params[i].grad.data);
  }
  rl_free(m);
}
