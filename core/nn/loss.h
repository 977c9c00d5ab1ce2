/*
** loss.h -- functional losses (not modules): the mean loss over a batch and, optionally, its gradient with
** respect to the logits.
*/
#ifndef RL_LOSS_H
#define RL_LOSS_H

#include "../tensor.h"

/* Cross-entropy of logits (B x C, or a 1-D tensor = one row) against labels (B class ids 0..C-1 stored as
** reals): mean_b [logsumexp(z_b) - z_b[y_b]], via a stable log-softmax. If grad is not NULL it must be B x C and
** receives d loss / d logits = (softmax(z_b) - onehot(y_b)) / B. Validates finiteness, label integrality/range. */
int rl_cross_entropy(const rl_tensor *logits, const real *labels, real *loss, rl_tensor *grad);

/* Binary cross-entropy with logits (B x 1 or 1-D of B) against targets (B values in [0, 1]):
** mean_b [max(z, 0) - z y + log(1 + exp(-|z|))]. grad (same count B, nullable) receives (sigmoid(z) - y) / B. */
int rl_bce_with_logits(const rl_tensor *logits, const real *targets, real *loss, rl_tensor *grad);

#endif
