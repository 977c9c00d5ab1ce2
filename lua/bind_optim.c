/*
** bind_optim.c -- Lua binding of core/optim: low-level update steps on tensors, the learning-rate schedules and
** gradient clipping. rotlab/optim.lua builds the optimizer and scheduler objects on top of these.
**   core.optim_sgd_check(cfg)                               cfg = {lr, momentum, dampening, weight_decay, nesterov}
**   core.optim_sgd_step(value, grad, buf|nil, cfg, step)    in place on value (and buf)
**   core.optim_adam_check(cfg)                              cfg = {lr, betas, eps, weight_decay, amsgrad, decoupled}
**   core.optim_adam_step(value, grad, m, v, vmax|nil, cfg, step)             in place on value, m, v (and vmax)
**   core.optim_step_lr(base_lr, epoch, step_size, gamma)                     -> lr
**   core.optim_cosine_warm_restarts(base_lr, epoch, T_0, T_mult, eta_min)    -> lr, T_cur, T_i
**   core.optim_clip_grad_norm({tensor, ...}, max_norm)      -> total norm before clipping (grads scaled in place)
**   core.optim_storage(tensor)                              -> light userdata of its data (nil if empty)
** Configuration errors are raised with the core message (e.g. "option 'lr' must be >= 0, got -1") so the Lua
** layer can prefix the user's function and argument.
*/
#include <math.h>

#include "../core/optim/adam.h"
#include "../core/optim/clip.h"
#include "../core/optim/schedule.h"
#include "../core/optim/sgd.h"
#include "bind.h"

static const char *const sgd_keys[] = {"lr", "momentum", "dampening", "weight_decay", "nesterov", NULL};
static const char *const adam_keys[] = {"lr", "betas", "eps", "weight_decay", "amsgrad", "decoupled", NULL};

/* Field key of the table at idx as a number (def when absent); type errors name the option. */
static double cfg_number(lua_State *L, int idx, const char *key, double def) {
  double v = def;
  int t = lua_getfield(L, idx, key);
  if (t != LUA_TNIL) {
    if (t != LUA_TNUMBER) luaL_error(L, "option '%s' must be a number, got %s", key, luaL_typename(L, -1));
    v = (double)lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int cfg_boolean(lua_State *L, int idx, const char *key, int def) {
  int v = def;
  int t = lua_getfield(L, idx, key);
  if (t != LUA_TNIL) {
    if (t != LUA_TBOOLEAN) luaL_error(L, "option '%s' must be a boolean, got %s", key, luaL_typename(L, -1));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static void check_cfg_table(lua_State *L, int idx, const char *fname, const char *const *keys) {
  luaL_checktype(L, idx, LUA_TTABLE);
  rlb_check_options(L, idx, fname, keys);
}

static rl_sgd_config check_sgd_config(lua_State *L, int idx) {
  check_cfg_table(L, idx, "sgd", sgd_keys);
  rl_sgd_config d = rl_sgd_defaults(), c;
  c.lr = cfg_number(L, idx, "lr", d.lr);
  c.momentum = cfg_number(L, idx, "momentum", d.momentum);
  c.dampening = cfg_number(L, idx, "dampening", d.dampening);
  c.weight_decay = cfg_number(L, idx, "weight_decay", d.weight_decay);
  c.nesterov = cfg_boolean(L, idx, "nesterov", d.nesterov);
  if (rl_sgd_check(&c)) rlb_error(L);
  return c;
}

static rl_adam_config check_adam_config(lua_State *L, int idx) {
  check_cfg_table(L, idx, "adam", adam_keys);
  int decoupled = cfg_boolean(L, idx, "decoupled", 0);
  rl_adam_config d = decoupled ? rl_adamw_defaults() : rl_adam_defaults(), c = d;
  c.lr = cfg_number(L, idx, "lr", d.lr);
  int t = lua_getfield(L, idx, "betas");
  if (t != LUA_TNIL) {
    int ok1 = 0, ok2 = 0;
    if (t == LUA_TTABLE && lua_rawlen(L, -1) == 2) {
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      c.beta1 = (double)lua_tonumberx(L, -2, &ok1);
      c.beta2 = (double)lua_tonumberx(L, -1, &ok2);
      ok1 = ok1 && lua_type(L, -2) == LUA_TNUMBER;
      ok2 = ok2 && lua_type(L, -1) == LUA_TNUMBER;
      lua_pop(L, 2);
    }
    if (!ok1 || !ok2) luaL_error(L, "option 'betas' must be a list of two numbers {beta1, beta2}");
  }
  lua_pop(L, 1);
  c.eps = cfg_number(L, idx, "eps", d.eps);
  c.weight_decay = cfg_number(L, idx, "weight_decay", d.weight_decay);
  c.amsgrad = cfg_boolean(L, idx, "amsgrad", d.amsgrad);
  c.decoupled = decoupled;
  if (rl_adam_check(&c)) rlb_error(L);
  return c;
}

/* A tensor at idx with exactly numel values (nil allowed when optional; then NULL). */
static real *check_buffer(lua_State *L, int idx, const char *what, int64_t numel, int optional) {
  if (optional && lua_isnoneornil(L, idx)) return NULL;
  rlb_tensor *u = rlb_checktensor(L, idx);
  if (u->t.numel != numel)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s has %I values, the parameter has %I", what, (lua_Integer)u->t.numel,
                                          (lua_Integer)numel));
  return u->t.data;
}

static int64_t check_step(lua_State *L, int idx) {
  lua_Integer step = luaL_checkinteger(L, idx);
  luaL_argcheck(L, step >= 1, idx, "step index must be >= 1");
  return (int64_t)step;
}

static int l_sgd_check(lua_State *L) {
  check_sgd_config(L, 1);
  return 0;
}

/* core.optim_sgd_step(value, grad, buf|nil, cfg, step) */
static int l_sgd_step(lua_State *L) {
  rlb_tensor *value = rlb_checktensor(L, 1);
  int64_t n = value->t.numel;
  const real *grad = check_buffer(L, 2, "grad", n, 0);
  real *buf = check_buffer(L, 3, "momentum buffer", n, 1);
  rl_sgd_config c = check_sgd_config(L, 4);
  int64_t step = check_step(L, 5);
  if (rl_sgd_step(n, value->t.data, grad, buf, &c, step)) return rlb_error(L);
  return 0;
}

static int l_adam_check(lua_State *L) {
  check_adam_config(L, 1);
  return 0;
}

/* core.optim_adam_step(value, grad, exp_avg, exp_avg_sq, max_exp_avg_sq|nil, cfg, step) */
static int l_adam_step(lua_State *L) {
  rlb_tensor *value = rlb_checktensor(L, 1);
  int64_t n = value->t.numel;
  const real *grad = check_buffer(L, 2, "grad", n, 0);
  real *m = check_buffer(L, 3, "exp_avg", n, 0);
  real *v = check_buffer(L, 4, "exp_avg_sq", n, 0);
  real *vmax = check_buffer(L, 5, "max_exp_avg_sq", n, 1);
  rl_adam_config c = check_adam_config(L, 6);
  int64_t step = check_step(L, 7);
  if (rl_adam_step(n, value->t.data, grad, m, v, vmax, &c, step)) return rlb_error(L);
  return 0;
}

/* core.optim_step_lr(base_lr, epoch, step_size, gamma) -> lr */
static int l_step_lr(lua_State *L) {
  double base = luaL_checknumber(L, 1);
  lua_Integer epoch = luaL_checkinteger(L, 2), step_size = luaL_checkinteger(L, 3);
  double gamma = luaL_checknumber(L, 4), lr;
  if (rl_step_lr(base, (int64_t)epoch, (int64_t)step_size, gamma, &lr)) return rlb_error(L);
  lua_pushnumber(L, lr);
  return 1;
}

/* core.optim_cosine_warm_restarts(base_lr, epoch, T_0, T_mult, eta_min) -> lr, T_cur, T_i */
static int l_cosine_warm_restarts(lua_State *L) {
  double base = luaL_checknumber(L, 1), epoch = luaL_checknumber(L, 2);
  lua_Integer T_0 = luaL_checkinteger(L, 3), T_mult = luaL_checkinteger(L, 4);
  double eta_min = luaL_checknumber(L, 5), lr, cur, len;
  if (rl_cosine_warm_restarts(base, epoch, (int64_t)T_0, (int64_t)T_mult, eta_min, &lr, &cur, &len))
    return rlb_error(L);
  lua_pushnumber(L, lr);
  lua_pushnumber(L, cur);
  lua_pushnumber(L, len);
  return 3;
}

/* core.optim_clip_grad_norm({tensor, ...}, max_norm) -> total norm (before clipping) */
static int l_clip_grad_norm(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double max_norm = luaL_checknumber(L, 2);
  lua_Integer count = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, count >= 1, 1, "expected a non-empty list of gradient tensors");
  /* Scratch arrays in a userdata (collected by the GC, so nothing leaks if a check below raises). */
  size_t bytes = (size_t)count * (sizeof(real *) + sizeof(int64_t));
  real **ptrs = lua_newuserdatauv(L, bytes, 0);
  int64_t *sizes = (int64_t *)(ptrs + count);
  for (lua_Integer k = 0; k < count; k++) {
    lua_rawgeti(L, 1, k + 1);
    rlb_tensor *u = rlb_totensor(L, -1);
    if (!u) return luaL_argerror(L, 1, lua_pushfstring(L, "entry %I is not a tensor", k + 1));
    ptrs[k] = u->t.data;
    sizes[k] = u->t.numel;
    lua_pop(L, 1);
  }
  double total;
  if (rl_clip_grad_norm((int64_t)count, ptrs, sizes, max_norm, &total)) return rlb_error(L);
  lua_pushnumber(L, total);
  return 1;
}

/* core.optim_storage(tensor) -> light userdata naming the first value (or nil for an empty tensor): lets the Lua
** layer refuse a parameter listed twice, since two views of one parameter are different userdata. */
static int l_storage(lua_State *L) {
  rlb_tensor *u = rlb_checktensor(L, 1);
  if (u->t.numel == 0)
    lua_pushnil(L);
  else
    lua_pushlightuserdata(L, u->t.data);
  return 1;
}

int rlb_open_optim(lua_State *L) {
  static const luaL_Reg fns[] = {{"optim_sgd_check", l_sgd_check},
                                 {"optim_sgd_step", l_sgd_step},
                                 {"optim_adam_check", l_adam_check},
                                 {"optim_adam_step", l_adam_step},
                                 {"optim_step_lr", l_step_lr},
                                 {"optim_cosine_warm_restarts", l_cosine_warm_restarts},
                                 {"optim_clip_grad_norm", l_clip_grad_norm},
                                 {"optim_storage", l_storage},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
