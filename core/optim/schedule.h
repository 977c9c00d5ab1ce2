/*
** schedule.h -- learning-rate schedules as pure functions of the epoch (stateless and reproducible): StepLR and
** CosineAnnealingWarmRestarts with PyTorch's formulas. The caller keeps the epoch and the base learning rate.
*/
#ifndef RL_OPTIM_SCHEDULE_H
#define RL_OPTIM_SCHEDULE_H

#include "../rl.h"

/* StepLR: *lr = base_lr * gamma^floor(epoch / step_size).
** base_lr finite >= 0, epoch >= 0, step_size >= 1, gamma finite >= 0. */
int rl_step_lr(double base_lr, int64_t epoch, int64_t step_size, double gamma, double *lr);

/* CosineAnnealingWarmRestarts: cycles of length T_0, T_0 T_mult, T_0 T_mult^2, ...; within a cycle of length
** T_i, at T_cur epochs after its start (epoch may be fractional):
**   *lr = eta_min + (base_lr - eta_min) (1 + cos(pi T_cur / T_i)) / 2
** base_lr finite >= 0, epoch finite >= 0, T_0 >= 1, T_mult >= 1, eta_min finite >= 0.
** T_cur and T_i (may be NULL) receive the position in the cycle. */
int rl_cosine_warm_restarts(double base_lr, double epoch, int64_t T_0, int64_t T_mult, double eta_min, double *lr,
                            double *T_cur, double *T_i);

#endif
