/*
** hrotp.c -- hierarchical ROTP (hrotp.h): the mixed pooling of eq. 13 and the set fusion of eq. 14, composed from
** ROTP modules through their public interface (rl_module_forward / rl_module_backward), plus a chain g of row-wise
** modules in fusion mode.
**
** Forward, mixed: every head pools the input (B sets) into its own B x D block; the blocks are interleaved into
** the top's input, B sets of M rows (row b M + m = head m's output for set b), which the top pools to B x D.
** Forward, fusion: the lower ROTP pools the S sets to S x D rows, g maps them row by row (S x D'), and the top
** pools them with the group offsets of the input (G groups) to G x D'.
** Backward runs the same parts in reverse: the top's input gradient is split back into the heads' output
** gradients (mixed; the heads' input gradients add up) or passed down the g chain to the lower ROTP (fusion).
** Every buffer is a module workspace, grown only when a batch is bigger than any before.
*/
#include <stdio.h>
#include <string.h>

#include "hrotp.h"

typedef struct hrotp {
  rl_module base;
  int mode, M, ng;
  int64_t dim;    /* D: input width of the heads */
  int64_t *gw;    /* ng + 1 widths along g: gw[0] = D, gw[k + 1] = output width of g[k] */
  int64_t gw_max; /* widest of them */
  rl_module **head, *top, **g;
  /* last forward */
  rl_batch tb;    /* the top's input: values in w_stack / w_low / w_gy[ng-1], set offsets in w_off */
  int64_t S, G;   /* fusion: sets and groups of the last forward */
  rl_workspace w_heads, w_stack, w_off, w_low;
  rl_workspace *w_gy; /* ng outputs of the g chain */
  rl_workspace w_ga, w_gb, w_gin; /* backward scratch */
} hrotp;

static const char *const mode_names[] = {"mixed", "fusion"};

static real *ws_real(rl_workspace *w, int64_t count, int *rc) {
  if (*rc) return NULL;
  *rc = rl_workspace_reserve(w, (size_t)(count > 0 ? count : 1) * sizeof(real));
  return *rc ? NULL : w->data;
}

/* Re-records a part's failure with the part named ("hrotp: head 2: rotp: ..."). */
static int part_fail(int rc, const char *part, int index) {
  char msg[RL_ERRMSG_LEN];
  snprintf(msg, sizeof msg, "%s", rl_error());
  if (index > 0) return rl_fail(rc, "hrotp: %s %d: %s", part, index, msg);
  return rl_fail(rc, "hrotp: %s: %s", part, msg);
}

static void set_training(hrotp *h) {
  int t = h->base.training;
  for (int i = 0; i < h->M; i++) h->head[i]->training = t;
  h->top->training = t;
  for (int k = 0; k < h->ng; k++) h->g[k]->training = t;
}

/* ---------------------------------------------------------------- mixed (eq. 13) */

static int mixed_forward(hrotp *h, const rl_batch *in, rl_tensor *out) {
  int64_t B = in->count[0], D = h->dim, M = h->M, bd = B * D;
  int rc = 0;
  real *heads = ws_real(&h->w_heads, M * bd, &rc), *stack = ws_real(&h->w_stack, M * bd, &rc);
  if (!rc) rc = rl_workspace_reserve(&h->w_off, (size_t)(B + 1) * sizeof(int64_t));
  if (rc) return rc;
  for (int m = 0; m < M; m++) {
    rl_tensor y = rl_matrix(heads + m * bd, B, D);
    if ((rc = rl_module_forward(h->head[m], in, &y))) return part_fail(rc, "head", m + 1);
  }
  int64_t *off = h->w_off.data;
  for (int64_t b = 0; b < B; b++) {
    off[b] = b * M;
    for (int64_t m = 0; m < M; m++) memcpy(stack + (b * M + m) * D, heads + m * bd + b * D, (size_t)D * sizeof(real));
  }
  off[B] = B * M;
  memset(&h->tb, 0, sizeof h->tb);
  h->tb.values = rl_matrix(stack, B * M, D);
  h->tb.nlevels = 1;
  h->tb.offsets[0] = off;
  h->tb.count[0] = B;
  if ((rc = rl_module_forward(h->top, &h->tb, out))) return part_fail(rc, "top", 0);
  return RL_OK;
}

static int mixed_backward(hrotp *h, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  int64_t B = in->count[0], D = h->dim, M = h->M, R = rl_rows(&in->values);
  int rc = 0;
  real *gstack = ws_real(&h->w_ga, M * B * D, &rc), *ghead = ws_real(&h->w_gb, B * D, &rc);
  real *gtmp = grad_in && M > 1 ? ws_real(&h->w_gin, R * D, &rc) : NULL;
  if (rc) return rc;
  rl_tensor gs = rl_matrix(gstack, B * M, D);
  if ((rc = rl_module_backward(h->top, &h->tb, grad_out, &gs))) return part_fail(rc, "top", 0);
  for (int m = 0; m < M; m++) {
    for (int64_t b = 0; b < B; b++) memcpy(ghead + b * D, gstack + (b * M + m) * D, (size_t)D * sizeof(real));
    rl_tensor gh = rl_matrix(ghead, B, D), tmp = rl_matrix(gtmp, R, D);
    rl_tensor *gi = !grad_in ? NULL : m == 0 ? grad_in : &tmp;
    if ((rc = rl_module_backward(h->head[m], in, &gh, gi))) return part_fail(rc, "head", m + 1);
    if (grad_in && m > 0) rl_axpy(R * D, 1, gtmp, grad_in->data);
  }
  return RL_OK;
}

/* ---------------------------------------------------------------- fusion (eq. 14) */

static int fusion_forward(hrotp *h, const rl_batch *in, rl_tensor *out) {
  int64_t S = in->count[0], G = in->count[1], D = h->dim;
  int rc = 0;
  real *low = ws_real(&h->w_low, S * D, &rc);
  for (int k = 0; k < h->ng; k++) ws_real(&h->w_gy[k], S * h->gw[k + 1], &rc);
  if (!rc) rc = rl_workspace_reserve(&h->w_off, (size_t)(G + 1) * sizeof(int64_t));
  if (rc) return rc;
  int64_t *goff = h->w_off.data;
  memcpy(goff, in->offsets[1], (size_t)(G + 1) * sizeof(int64_t)); /* kept: the caller's batch may go away */
  rl_tensor cur = rl_matrix(low, S, D);
  if ((rc = rl_module_forward(h->head[0], in, &cur))) return part_fail(rc, "head", 0);
  for (int k = 0; k < h->ng; k++) {
    rl_batch bk;
    memset(&bk, 0, sizeof bk);
    bk.values = cur; /* plain rows: g is row-wise */
    rl_tensor y = rl_matrix(h->w_gy[k].data, S, h->gw[k + 1]);
    if ((rc = rl_module_forward(h->g[k], &bk, &y))) return part_fail(rc, "g module", k + 1);
    cur = y;
  }
  memset(&h->tb, 0, sizeof h->tb);
  h->tb.values = cur;
  h->tb.nlevels = 1;
  h->tb.offsets[0] = goff;
  h->tb.count[0] = G;
  h->S = S;
  h->G = G;
  if ((rc = rl_module_forward(h->top, &h->tb, out))) return part_fail(rc, "top", 0);
  return RL_OK;
}

static int fusion_backward(hrotp *h, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  int64_t S = in->count[0];
  if (in->count[1] != h->G || memcmp(in->offsets[1], h->w_off.data, (size_t)(h->G + 1) * sizeof(int64_t)) != 0)
    return rl_fail(RL_ESTATE, "hrotp: backward input is not the batch of the last forward (its group offsets differ)");
  int rc = 0;
  real *ga = ws_real(&h->w_ga, S * h->gw_max, &rc), *gb = ws_real(&h->w_gb, S * h->gw_max, &rc);
  if (rc) return rc;
  rl_tensor gcur = rl_matrix(ga, S, h->gw[h->ng]);
  if ((rc = rl_module_backward(h->top, &h->tb, grad_out, &gcur))) return part_fail(rc, "top", 0);
  for (int k = h->ng - 1; k >= 0; k--) {
    rl_batch bk;
    memset(&bk, 0, sizeof bk);
    bk.values = rl_matrix(k == 0 ? (real *)h->w_low.data : (real *)h->w_gy[k - 1].data, S, h->gw[k]);
    rl_tensor gnext = rl_matrix(gb, S, h->gw[k]);
    if ((rc = rl_module_backward(h->g[k], &bk, &gcur, &gnext))) return part_fail(rc, "g module", k + 1);
    gcur = gnext;
    real *t = ga;
    ga = gb;
    gb = t;
  }
  if ((rc = rl_module_backward(h->head[0], in, &gcur, grad_in))) return part_fail(rc, "head", 0);
  return RL_OK;
}

/* ---------------------------------------------------------------- module plumbing */

static int hrotp_out_cols(const rl_module *m, const rl_batch *in, int64_t *cols) {
  const hrotp *h = (const hrotp *)m;
  int rc;
  if (h->mode == RL_HROTP_FUSION) {
    if (in->nlevels < 2)
      return rl_fail(RL_EINVAL, "hrotp (fusion): expected a batch of groups of sets (rl.groups(sets, group_offsets)), "
                                "got %d level(s) of offsets", in->nlevels);
    rc = rl_expect_matrix(&in->values, -1, h->dim, "hrotp: input (the option 'dim' must equal the input width)");
    if (rc) return rc;
    *cols = h->gw[h->ng];
    return RL_OK;
  }
  rc = rl_expect_sets(in, h->dim, "hrotp: input (the option 'dim' must equal the input width)");
  if (rc) return rc;
  *cols = h->dim;
  return RL_OK;
}

static int hrotp_forward(rl_module *m, const rl_batch *in, rl_tensor *out) {
  hrotp *h = (hrotp *)m;
  set_training(h);
  return h->mode == RL_HROTP_MIXED ? mixed_forward(h, in, out) : fusion_forward(h, in, out);
}

static int hrotp_backward(rl_module *m, const rl_batch *in, const rl_tensor *grad_out, rl_tensor *grad_in) {
  hrotp *h = (hrotp *)m;
  return h->mode == RL_HROTP_MIXED ? mixed_backward(h, in, grad_out, grad_in) : fusion_backward(h, in, grad_out, grad_in);
}

static void hrotp_destroy(rl_module *m) {
  hrotp *h = (hrotp *)m;
  if (h->head)
    for (int i = 0; i < h->M; i++) rl_module_free(h->head[i]);
  rl_module_free(h->top);
  if (h->g)
    for (int k = 0; k < h->ng; k++) rl_module_free(h->g[k]);
  if (h->w_gy)
    for (int k = 0; k < h->ng; k++) rl_workspace_free(&h->w_gy[k]);
  rl_workspace *ws[] = {&h->w_heads, &h->w_stack, &h->w_off, &h->w_low, &h->w_ga, &h->w_gb, &h->w_gin};
  for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) rl_workspace_free(ws[i]);
  rl_free(h->head);
  rl_free(h->g);
  rl_free(h->gw);
  rl_free(h->w_gy);
  m->nparams = 0; /* the entries alias the parts' storage, freed with the parts above */
}

static const rl_module_ops hrotp_ops = {"hrotp", hrotp_out_cols, hrotp_forward, hrotp_backward, hrotp_destroy};

/* ---------------------------------------------------------------- construction */

int rl_hrotp_chain_width(int ng, rl_module *const *g, int64_t d_in, int64_t *d_out) {
  int64_t w = d_in;
  for (int k = 0; k < ng; k++) {
    if (!g[k]) return rl_fail(RL_EINVAL, "hrotp: g module %d is missing", k + 1);
    if (g[k]->pools)
      return rl_fail(RL_EINVAL, "hrotp: g module %d (%s) is a pooling; g must map rows to rows (Linear, activations, "
                                "Dropout, ...)", k + 1, g[k]->ops->kind);
    rl_batch probe;
    memset(&probe, 0, sizeof probe);
    probe.values = rl_matrix(NULL, 1, w); /* out_cols only looks at the shape */
    int64_t next;
    int rc = g[k]->ops->out_cols(g[k], &probe, &next);
    if (rc) {
      char msg[RL_ERRMSG_LEN];
      snprintf(msg, sizeof msg, "%s", rl_error());
      return rl_fail(rc, "hrotp: g module %d (%s) does not take rows of width %lld: %s", k + 1, g[k]->ops->kind,
                     (long long)w, msg);
    }
    w = next;
  }
  *d_out = w;
  return RL_OK;
}

/* The parts in one sequence: heads, top, g. */
static int part_count(const rl_hrotp_parts *p) {
  return (p->head && p->heads > 0 ? p->heads : 0) + 1 + (p->g && p->ng > 0 ? p->ng : 0);
}

static rl_module *part_at(const rl_hrotp_parts *p, int i) {
  int nh = p->head && p->heads > 0 ? p->heads : 0;
  if (i < nh) return p->head[i];
  return i == nh ? p->top : p->g[i - nh - 1];
}

/* Frees every distinct part once (a module given twice is an error, but must not be freed twice). */
static void free_parts(const rl_hrotp_parts *p) {
  int n = part_count(p);
  for (int i = 0; i < n; i++) {
    rl_module *x = part_at(p, i);
    int dup = 0;
    for (int j = 0; j < i && !dup; j++) dup = part_at(p, j) == x;
    if (x && !dup) rl_module_free(x);
  }
}

static int validate(const rl_hrotp_parts *p, int64_t *dim, int64_t *gwidth) {
  if (p->mode != RL_HROTP_MIXED && p->mode != RL_HROTP_FUSION)
    return rl_fail(RL_EINVAL, "hrotp: mode must be mixed or fusion, got %d", p->mode);
  const char *mode = mode_names[p->mode];
  if (p->heads < 1 || p->heads > RL_HROTP_MAX_HEADS)
    return rl_fail(RL_EINVAL, "hrotp: the number of heads must be 1..%d, got %d", RL_HROTP_MAX_HEADS, p->heads);
  if (p->mode == RL_HROTP_FUSION && p->heads != 1)
    return rl_fail(RL_EINVAL, "hrotp (fusion): one lower ROTP pools the sets, got %d heads", p->heads);
  if (p->mode == RL_HROTP_MIXED && p->ng > 0)
    return rl_fail(RL_EINVAL, "hrotp (mixed): g only applies to mode fusion (eq. 14)");
  if (p->ng < 0 || (p->ng > 0 && !p->g)) return rl_fail(RL_EINVAL, "hrotp: bad g chain (%d modules)", p->ng);
  if (!p->head) return rl_fail(RL_EINVAL, "hrotp: no heads given");
  for (int i = 0; i < p->heads; i++) {
    const rl_rotp_config *c = rl_rotp_config_of(p->head[i]);
    if (!c) return rl_fail(RL_EINVAL, "hrotp: head %d is not a rotp module", i + 1);
    if (i == 0) *dim = c->dim;
    if (c->dim != *dim)
      return rl_fail(RL_EINVAL, "hrotp: head %d has dim %lld but head 1 has dim %lld (all heads pool the same input)",
                     i + 1, (long long)c->dim, (long long)*dim);
  }
  const rl_rotp_config *tc = rl_rotp_config_of(p->top);
  if (!tc) return rl_fail(RL_EINVAL, "hrotp: the top is not a rotp module");
  int rc = rl_hrotp_chain_width(p->mode == RL_HROTP_FUSION ? p->ng : 0, p->g, *dim, gwidth);
  if (rc) return rc;
  if (tc->dim != *gwidth)
    return rl_fail(RL_EINVAL, "hrotp (%s): the top has dim %lld but pools rows of width %lld (%s)", mode,
                   (long long)tc->dim, (long long)*gwidth, p->ng > 0 ? "the output width of g" : "the heads' dim");
  int n = part_count(p);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++)
      if (part_at(p, i) == part_at(p, j))
        return rl_fail(RL_EINVAL, "hrotp: the same module is given twice (part %d and part %d); every part needs its "
                                  "own module", j + 1, i + 1);
  int total = 0;
  for (int i = 0; i < n; i++) total += part_at(p, i)->nparams;
  if (total > RL_MAX_PARAMS)
    return rl_fail(RL_EINVAL, "hrotp: the parts have %d parameter tensors, more than RL_MAX_PARAMS = %d (use fewer "
                              "heads, fixed or unused families, or build with a larger RL_MAX_PARAMS)",
                   total, RL_MAX_PARAMS);
  return RL_OK;
}

/* Lists the parameters of part x under prefix (aliases: no copy). */
static int alias_params(hrotp *h, const char *prefix, rl_module *x) {
  for (int i = 0; i < x->nparams; i++) {
    rl_param *q = &h->base.params[h->base.nparams];
    int len = snprintf(q->name, sizeof q->name, "%s.%s", prefix, x->params[i].name);
    if (len < 0 || (size_t)len >= sizeof q->name)
      return rl_fail(RL_EINVAL, "hrotp: parameter name '%s.%s' is longer than %d characters (RL_PARAM_NAME_LEN)",
                     prefix, x->params[i].name, RL_PARAM_NAME_LEN - 1);
    q->value = x->params[i].value;
    q->grad = x->params[i].grad;
    h->base.nparams++;
  }
  return RL_OK;
}

rl_module *rl_pool_hrotp_new(const rl_hrotp_parts *p) {
  if (!p) {
    rl_fail(RL_EINVAL, "hrotp: no parts given");
    return NULL;
  }
  int64_t dim = 0, gwidth = 0;
  if (validate(p, &dim, &gwidth)) {
    free_parts(p);
    return NULL;
  }
  int ng = p->mode == RL_HROTP_FUSION ? p->ng : 0;
  hrotp *h = rl_calloc(1, sizeof *h);
  rl_module **head = h ? rl_calloc((size_t)p->heads, sizeof *head) : NULL;
  rl_module **g = head && ng ? rl_calloc((size_t)ng, sizeof *g) : NULL;
  int64_t *gw = head ? rl_calloc((size_t)ng + 1, sizeof *gw) : NULL;
  rl_workspace *wgy = gw && ng ? rl_calloc((size_t)ng, sizeof *wgy) : NULL;
  if (!h || !head || (ng && !g) || !gw || (ng && !wgy)) {
    rl_free(head);
    rl_free(g);
    rl_free(gw);
    rl_free(wgy);
    rl_free(h);
    free_parts(p);
    return NULL;
  }
  /* from here the module owns the parts: rl_module_free(&h->base) releases everything */
  rl_module_init(&h->base, &hrotp_ops, p->mode == RL_HROTP_FUSION ? 2 : 1);
  h->mode = p->mode;
  h->M = p->heads;
  h->ng = ng;
  h->dim = dim;
  h->head = head;
  h->g = g;
  h->gw = gw;
  h->w_gy = wgy;
  for (int i = 0; i < p->heads; i++) head[i] = p->head[i];
  h->top = p->top;
  for (int k = 0; k < ng; k++) g[k] = p->g[k];
  gw[0] = dim;
  h->gw_max = dim;
  for (int k = 0; k < ng; k++) {
    rl_hrotp_chain_width(1, &g[k], gw[k], &gw[k + 1]); /* validated above */
    if (gw[k + 1] > h->gw_max) h->gw_max = gw[k + 1];
  }
  char prefix[RL_PARAM_NAME_LEN];
  for (int i = 0; i < h->M; i++) {
    if (h->mode == RL_HROTP_MIXED)
      snprintf(prefix, sizeof prefix, "head%d", i + 1);
    else
      snprintf(prefix, sizeof prefix, "head");
    if (alias_params(h, prefix, head[i])) goto fail;
  }
  if (alias_params(h, "top", h->top)) goto fail;
  for (int k = 0; k < ng; k++) {
    if (p->gname && p->gname[k])
      snprintf(prefix, sizeof prefix, "%s", p->gname[k]);
    else
      snprintf(prefix, sizeof prefix, "g.%d", k + 1);
    if (alias_params(h, prefix, g[k])) goto fail;
  }
  return &h->base;
fail:
  rl_module_free(&h->base);
  return NULL;
}

/* ---------------------------------------------------------------- inspection */

static const hrotp *as_hrotp(const rl_module *m) { return m && m->ops == &hrotp_ops ? (const hrotp *)m : NULL; }

int rl_hrotp_mode(const rl_module *m) { return as_hrotp(m) ? as_hrotp(m)->mode : -1; }
int rl_hrotp_heads(const rl_module *m) { return as_hrotp(m) ? as_hrotp(m)->M : -1; }

rl_module *rl_hrotp_head(const rl_module *m, int i) {
  const hrotp *h = as_hrotp(m);
  return h && i >= 0 && i < h->M ? h->head[i] : NULL;
}

rl_module *rl_hrotp_top(const rl_module *m) { return as_hrotp(m) ? as_hrotp(m)->top : NULL; }

int rl_hrotp_top_input(const rl_module *m, rl_batch *out) {
  const hrotp *h = as_hrotp(m);
  if (!h) return rl_fail(RL_EINVAL, "top_input: not an hrotp module");
  if (!m->has_forward) return rl_fail(RL_ESTATE, "hrotp: top_input() called before forward");
  *out = h->tb;
  return RL_OK;
}
