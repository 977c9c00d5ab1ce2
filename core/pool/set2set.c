/*
** set2set.c -- Set2Set pooling: an LSTM over the B pooled rows (rl_gemm for the gate products) alternating with
** a per-set softmax attention (parallel across sets). Forward keeps every step's q*, cell state, gate
** activations and attention weights; backward runs back through all steps (no allocation once warm).
**
** Differences between the paper default and compat = "reference" (golden/README.md section 6, item 10):
**   only the per-set softmax: the reference's graph softmax adds RL_SOFTMAX_EPS (1e-16) to its denominator
**   (compat); the default is the exact softmax. The two differ by about 1e-16 relative.
**
** Backward of step t, with dq* = [dh, dr]: the attention (setops) gives dL/de_n, adds a_n dr to dx_n, then
** dx_n += dL/de_n h and dh += sum_n dL/de_n x_n. The cell: do = dh tanh(c), dc += dh o (1 - tanh(c)^2),
** di = dc g, df = dc c_prev, dg = dc i, dc_prev = dc f; pre-activation gradients through sigmoid/tanh give
** dG (B x 4 dim); dW_ih += dG^T q*_prev, dW_hh += dG^T h_prev, both biases += column sums of dG,
** dq*_prev = dG W_ih with dG W_hh added to its h half (h_prev feeds both the input and the recurrence).
*/
#include <math.h>
#include <string.h>

#include "../blas.h"
#include "set2set.h"
#include "setops.h"

enum { W_IH, W_HH, B_IH, B_HH };

typedef struct set2set_pool {
  rl_module base;
  int64_t dim, steps;
  int compat;
  rl_workspace qstar; /* (steps+1) x B x 2 dim: q* before each step (q*_0 = 0) and after the last */
  rl_workspace cell;  /* (steps+1) x B x dim: c_0 = 0, c_1 ... c_T */
  rl_workspace gates; /* steps x B x 4 dim: sigmoid(i), sigmoid(f), tanh(g), sigmoid(o) */
  rl_workspace tanhc; /* steps x B x dim */
  rl_workspace att;   /* steps x rows: attention weights */
  rl_workspace gq, gc, dg, gs; /* backward: B x 2 dim, B x dim, B x 4 dim, rows */
} set2set_pool;

static int set2set_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const set2set_pool *p = (const set2set_pool *)m;
  int rc = rl_expect_sets(in, p->dim, "set2set");
  if (rc) return rc;
  *cols = 2 * p->dim;
  return RL_OK;
}

static int set2set_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  set2set_pool *p = (set2set_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, B = in->count[0], T = p->steps;
  size_t bd = (size_t)(B * D);
  int rc = rl_workspace_reserve(&p->qstar, (size_t)(T + 1) * 2 * bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->cell, (size_t)(T + 1) * bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gates, (size_t)T * 4 * bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->tanhc, (size_t)T * bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->att, (size_t)(T * R) * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data;
  const int64_t *off = in->offsets[0];
  const real *Wih = m->params[W_IH].value.data, *Whh = m->params[W_HH].value.data;
  const real *bih = m->params[B_IH].value.data, *bhh = m->params[B_HH].value.data;
  real *qs = p->qstar.data, *cs = p->cell.data, *gates = p->gates.data, *tc = p->tanhc.data, *att = p->att.data;
  double eps = p->compat == RL_COMPAT_REFERENCE ? RL_SOFTMAX_EPS : 0;
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;

  memset(qs, 0, 2 * bd * sizeof(real));
  memset(cs, 0, bd * sizeof(real));
  for (int64_t t = 0; t < T; t++) {
    const real *qprev = qs + t * 2 * bd, *cprev = cs + t * bd;
    real *qnext = qs + (t + 1) * 2 * bd, *cnext = cs + (t + 1) * bd;
    real *G = gates + t * 4 * bd, *tct = tc + t * bd, *a = att + t * R;
    for (int64_t b = 0; b < B; b++)
      for (int64_t j = 0; j < 4 * D; j++) G[b * 4 * D + j] = bih[j] + bhh[j];
    rl_gemm(0, 1, B, 4 * D, 2 * D, 1, qprev, 2 * D, Wih, 2 * D, 1, G, 4 * D);
    rl_gemm(0, 1, B, 4 * D, D, 1, qprev, 2 * D, Whh, D, 1, G, 4 * D); /* h_prev = first half of q*_prev */
    for (int64_t b = 0; b < B; b++) {
      real *gb = G + b * 4 * D;
      for (int64_t d = 0; d < D; d++) {
        double i = rl_setop_sigmoid(gb[d]), f = rl_setop_sigmoid(gb[D + d]);
        double gg = tanh((double)gb[2 * D + d]), o = rl_setop_sigmoid(gb[3 * D + d]);
        double c = f * cprev[b * D + d] + i * gg, th = tanh(c);
        gb[d] = (real)i;
        gb[D + d] = (real)f;
        gb[2 * D + d] = (real)gg;
        gb[3 * D + d] = (real)o;
        cnext[b * D + d] = (real)c;
        tct[b * D + d] = (real)th;
        qnext[b * 2 * D + d] = (real)(o * th);
      }
    }
#pragma omp parallel for schedule(dynamic, 1) if (big)
    for (int64_t s = 0; s < B; s++) {
      int64_t lo = off[s], hi = off[s + 1];
      const real *h = qnext + s * 2 * D;
      for (int64_t r = lo; r < hi; r++) {
        double e = 0;
        for (int64_t d = 0; d < D; d++) e += (double)x[r * D + d] * h[d];
        a[r] = (real)e;
      }
      rl_setop_softmax_pool(x, D, lo, hi, a, a, qnext + s * 2 * D + D, eps);
    }
  }
  memcpy(out->data, qs + T * 2 * bd, 2 * bd * sizeof(real));
  return RL_OK;
}

static int set2set_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  set2set_pool *p = (set2set_pool *)m;
  int64_t R = rl_rows(&in->values), D = p->dim, B = in->count[0], T = p->steps;
  size_t bd = (size_t)(B * D);
  int rc = rl_workspace_reserve(&p->gq, 2 * bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gc, bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->dg, 4 * bd * sizeof(real));
  if (!rc) rc = rl_workspace_reserve(&p->gs, (size_t)R * sizeof(real));
  if (rc) return rc;
  const real *x = in->values.data;
  const int64_t *off = in->offsets[0];
  const real *Wih = m->params[W_IH].value.data, *Whh = m->params[W_HH].value.data;
  real *gWih = m->params[W_IH].grad.data, *gWhh = m->params[W_HH].grad.data;
  const real *qs = p->qstar.data, *cs = p->cell.data, *gates = p->gates.data, *tc = p->tanhc.data;
  const real *att = p->att.data;
  real *gq = p->gq.data, *gc = p->gc.data, *dG = p->dg.data, *gs = p->gs.data;
  real *gx = grad_in ? grad_in->data : NULL;
  int big = R * D >= RL_BASELINE_PARALLEL_MIN_WORK;

  memcpy(gq, grad_out->data, 2 * bd * sizeof(real));
  memset(gc, 0, bd * sizeof(real));
  if (gx) memset(gx, 0, (size_t)(R * D) * sizeof(real));
  for (int64_t t = T - 1; t >= 0; t--) {
    const real *qprev = qs + t * 2 * bd, *cprev = cs + t * bd, *qcur = qs + (t + 1) * 2 * bd;
    const real *G = gates + t * 4 * bd, *tct = tc + t * bd, *a = att + t * R;
    /* attention: r_t = sum_n a_n x_n with a = softmax(x_n . h_t) */
#pragma omp parallel for schedule(dynamic, 1) if (big)
    for (int64_t s = 0; s < B; s++) {
      int64_t lo = off[s], hi = off[s + 1];
      const real *h = qcur + s * 2 * D;
      real *gh = gq + s * 2 * D;
      rl_setop_softmax_pool_backward(x, D, lo, hi, a, gh + D, gs, gx);
      for (int64_t d = 0; d < D; d++) {
        double acc = 0;
        for (int64_t r = lo; r < hi; r++) acc += (double)gs[r] * x[r * D + d];
        gh[d] += (real)acc;
      }
      if (gx)
        for (int64_t r = lo; r < hi; r++) rl_axpy(D, gs[r], h, gx + r * D);
    }
    /* LSTM cell */
    for (int64_t b = 0; b < B; b++) {
      const real *gb = G + b * 4 * D;
      real *db = dG + b * 4 * D;
      for (int64_t d = 0; d < D; d++) {
        double i = gb[d], f = gb[D + d], gg = gb[2 * D + d], o = gb[3 * D + d], th = tct[b * D + d];
        double gh = gq[b * 2 * D + d];
        double c = gc[b * D + d] + gh * o * (1 - th * th);
        db[d] = (real)(c * gg * i * (1 - i));
        db[D + d] = (real)(c * cprev[b * D + d] * f * (1 - f));
        db[2 * D + d] = (real)(c * i * (1 - gg * gg));
        db[3 * D + d] = (real)(gh * th * o * (1 - o));
        gc[b * D + d] = (real)(c * f);
      }
    }
    rl_gemm(1, 0, 4 * D, 2 * D, B, 1, dG, 4 * D, qprev, 2 * D, 1, gWih, 2 * D);
    rl_gemm(1, 0, 4 * D, D, B, 1, dG, 4 * D, qprev, 2 * D, 1, gWhh, D);
    rl_setop_add_colsum(dG, B, 4 * D, m->params[B_IH].grad.data);
    rl_setop_add_colsum(dG, B, 4 * D, m->params[B_HH].grad.data);
    if (t == 0) break; /* q*_0 and h_0 are constants */
    rl_gemm(0, 0, B, 2 * D, 4 * D, 1, dG, 4 * D, Wih, 2 * D, 0, gq, 2 * D);
    rl_gemm(0, 0, B, D, 4 * D, 1, dG, 4 * D, Whh, D, 1, gq, 2 * D);
  }
  return RL_OK;
}

static void set2set_destroy(rl_module *m) {
  set2set_pool *p = (set2set_pool *)m;
  rl_workspace *ws[] = {&p->qstar, &p->cell, &p->gates, &p->tanhc, &p->att, &p->gq, &p->gc, &p->dg, &p->gs};
  for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) rl_workspace_free(ws[i]);
}

static const rl_module_ops set2set_ops = {"set2set", set2set_out_cols, set2set_forward, set2set_backward,
                                          set2set_destroy};

rl_module *rl_pool_set2set_new(int64_t dim, int64_t steps, int compat, rl_rng *g) {
  if (dim < 1) {
    rl_fail(RL_EINVAL, "set2set: expected a positive input width, got %lld", (long long)dim);
    return NULL;
  }
  if (steps < 1 || steps > RL_BASELINE_MAX_STEPS) {
    rl_fail(RL_EINVAL, "set2set: expected 1..%d processing steps, got %lld", RL_BASELINE_MAX_STEPS,
            (long long)steps);
    return NULL;
  }
  if (compat != RL_COMPAT_PAPER && compat != RL_COMPAT_REFERENCE) {
    rl_fail(RL_EINVAL, "set2set: unknown compat mode %d", compat);
    return NULL;
  }
  set2set_pool *p = rl_calloc(1, sizeof *p);
  if (!p) return NULL;
  rl_module_init(&p->base, &set2set_ops, 1);
  p->dim = dim;
  p->steps = steps;
  p->compat = compat;
  int64_t wih[2] = {4 * dim, 2 * dim}, whh[2] = {4 * dim, dim}, bias[1] = {4 * dim};
  const char *names[4] = {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"};
  const int64_t *shapes[4] = {wih, whh, bias, bias};
  for (int i = 0; i < 4; i++) {
    rl_param *q = rl_module_add_param(&p->base, names[i], i < 2 ? 2 : 1, shapes[i]);
    if (!q) {
      rl_module_free(&p->base);
      return NULL;
    }
    rl_setop_init_uniform(q->value.data, q->value.numel, 1.0 / sqrt((double)dim), g);
  }
  return &p->base;
}
