/*
** hrotp.h -- hierarchical ROTP (Xu & Cheng, TPAMI 2023, section 3.3) as an rl_module composed of ROTP modules.
**
**   mixed (eq. 13):  f(X) = ROTP([ROTP_1(X), ..., ROTP_M(X)]; theta_{M+1})
**                    M heads pool every set to a D-vector; the M vectors of a set are a set of M samples that the
**                    top ROTP pools to one D-vector. Input: sets (level 0) -> one row per set (pools = 1).
**   fusion (eq. 14): f({X_m}) = ROTP([g(ROTP(X_m; theta_1))]_m; theta_2)
**                    one lower ROTP pools every set to a row, an optional chain g of row-wise modules maps the rows
**                    (its output width D' may differ from D: the top's dim is D'), and the top ROTP pools the sets
**                    of each group. Input: groups of sets (levels 0 and 1) -> one row per group (pools = 2).
**
** The module owns its parts: the heads, the top and the g chain are freed with it. Its parameter list holds the
** parts' parameters under prefixed names ("head1.a1", ..., "top.a1", "<g name>.weight"); the entries alias the
** parts' storage, so set_param/zero_grad/optimizers act on the parts directly. train/eval is passed on to every
** part at each forward.
*/
#ifndef RL_POOL_HROTP_H
#define RL_POOL_HROTP_H

#include "rotp.h"

enum { RL_HROTP_MIXED = 0, RL_HROTP_FUSION = 1 };

/* Default number of heads of the mixed mode (the paper's mean-max example has two). */
#define RL_HROTP_DEFAULT_HEADS 2
/* Most heads accepted (the parameter list bounds learnable heads further: RL_MAX_PARAMS). */
#define RL_HROTP_MAX_HEADS 1024

typedef struct rl_hrotp_parts {
  int mode;                 /* RL_HROTP_MIXED | RL_HROTP_FUSION */
  int heads;                /* M >= 1 (fusion: 1, the lower ROTP) */
  rl_module **head;         /* heads ROTP modules of dim D */
  rl_module *top;           /* ROTP of dim D (mixed) or of g's output width (fusion) */
  int ng;                   /* fusion: number of row-wise modules in g (0: no g) */
  rl_module **g;            /* applied in order */
  const char *const *gname; /* parameter prefix of each g module ("g", "g.1", ...); NULL: "g.<i>" (1-based) */
} rl_hrotp_parts;

/* Checks a chain of row-wise modules for input width d_in and gives its output width (d_in for ng = 0). */
int rl_hrotp_chain_width(int ng, rl_module *const *g, int64_t d_in, int64_t *d_out);

/* Creates the module from its parts and takes ownership of every module in p (also on failure, when they are
** freed). The arrays themselves stay the caller's. NULL + rl_error() on a bad composition (a part that is not a
** ROTP, dim mismatch, pooling module in g, too many parameters). */
rl_module *rl_pool_hrotp_new(const rl_hrotp_parts *p);

/* Inspection. NULL / -1 when m is not an HROTP module or the part does not exist. */
int rl_hrotp_mode(const rl_module *m);
int rl_hrotp_heads(const rl_module *m);
rl_module *rl_hrotp_head(const rl_module *m, int i); /* 0-based */
rl_module *rl_hrotp_top(const rl_module *m);
/* The batch the top ROTP pooled in the last forward (values + its set offsets; views into the module). */
int rl_hrotp_top_input(const rl_module *m, rl_batch *out);

#endif
