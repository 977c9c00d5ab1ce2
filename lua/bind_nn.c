/*
** bind_nn.c -- Lua binding of core/nn: the constructors nn_Linear, nn_ReLU, nn_ELU, nn_Tanh, nn_Sigmoid,
** nn_Softplus, nn_Dropout (module handles, see bind_core.c for their shared methods) and the loss objects
** nn_CrossEntropy, nn_BCEWithLogits (loss:forward(logits, labels) -> number, loss:backward() -> gradient).
** lua/rotlab/nn.lua re-exports every nn_<Name> as rl.nn.<Name>.
*/
#include <string.h>

#include "../core/nn/activation.h"
#include "../core/nn/dropout.h"
#include "../core/nn/linear.h"
#include "../core/nn/loss.h"
#include "bind.h"

#define RLB_LOSS "rotlab.loss"

/* Constructor argument error with a fixed function name (the called name is unreliable through aliases). */
static int ctor_argerror(lua_State *L, int arg, const char *fname, const char *msg) {
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
}

/* Reads a positive integer width at arg (named `what` in the message). */
static int64_t check_width(lua_State *L, int arg, const char *fname, const char *what) {
  int ok;
  lua_Integer v = lua_tointegerx(L, arg, &ok);
  if (!ok || v < 1) {
    const char *got = lua_type(L, arg) == LUA_TNUMBER ? luaL_tolstring(L, arg, NULL) : luaL_typename(L, arg);
    ctor_argerror(L, arg, fname, lua_pushfstring(L, "expected a positive %s width, got %s", what, got));
  }
  return (int64_t)v;
}

/* Stores a freshly created core module in the handle on top of the stack, or raises its error. */
static int finish_module(lua_State *L, rlb_module *u, rl_module *m) {
  if (!m) return rlb_error(L);
  u->m = m;
  return 1;
}

/* nn_Linear(in, out [, {bias = true, rng = g}]) */
static int l_linear(lua_State *L) {
  static const char *const known[] = {"bias", "rng", NULL};
  int64_t in = check_width(L, 1, "Linear", "input");
  int64_t out = check_width(L, 2, "Linear", "output");
  rlb_check_options(L, 3, "Linear", known);
  int bias = rlb_opt_boolean(L, 3, "bias", 1);
  rl_rng *g = rlb_opt_rng(L, 3); /* pushed; only used during construction */
  rlb_module *u = rlb_newmodule(L);
  return finish_module(L, u, rl_linear_new(in, out, bias, g));
}

/* Constructors without options accept nothing, or nil, or an empty table. */
static void check_no_options(lua_State *L, const char *fname) {
  if (lua_isnoneornil(L, 1)) return;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_pushnil(L);
    if (!lua_next(L, 1)) return;
    ctor_argerror(L, 1, fname, lua_pushfstring(L, "takes no options, got option '%s'", luaL_tolstring(L, -2, NULL)));
  }
  ctor_argerror(L, 1, fname, lua_pushfstring(L, "takes no arguments, got %s", luaL_typename(L, 1)));
}

static int simple_activation(lua_State *L, const char *fname, rl_module *(*ctor)(void)) {
  check_no_options(L, fname);
  rlb_module *u = rlb_newmodule(L);
  return finish_module(L, u, ctor());
}

static int l_relu(lua_State *L) { return simple_activation(L, "ReLU", rl_relu_new); }
static int l_tanh(lua_State *L) { return simple_activation(L, "Tanh", rl_tanh_new); }
static int l_sigmoid(lua_State *L) { return simple_activation(L, "Sigmoid", rl_sigmoid_new); }

/* nn_ELU([{alpha = 1}]) */
static int l_elu(lua_State *L) {
  static const char *const known[] = {"alpha", NULL};
  rlb_check_options(L, 1, "ELU", known);
  real alpha = (real)rlb_opt_number(L, 1, "alpha", RL_ELU_ALPHA);
  rlb_module *u = rlb_newmodule(L);
  return finish_module(L, u, rl_elu_new(alpha));
}

/* nn_Softplus([{beta = 1, threshold = 20}]) */
static int l_softplus(lua_State *L) {
  static const char *const known[] = {"beta", "threshold", NULL};
  rlb_check_options(L, 1, "Softplus", known);
  real beta = (real)rlb_opt_number(L, 1, "beta", RL_SOFTPLUS_BETA);
  real threshold = (real)rlb_opt_number(L, 1, "threshold", RL_SOFTPLUS_THRESHOLD);
  if (!(beta > 0)) return ctor_argerror(L, 1, "Softplus", "option 'beta' must be positive");
  rlb_module *u = rlb_newmodule(L);
  return finish_module(L, u, rl_softplus_new(beta, threshold));
}

/* nn_Dropout(p [, {rng = g}]) -- the module keeps the generator alive */
static int l_dropout(lua_State *L) {
  static const char *const known[] = {"rng", NULL};
  int ok;
  lua_Number p = lua_tonumberx(L, 1, &ok);
  if (!ok || !(p >= 0 && p < 1))
    return ctor_argerror(L, 1, "Dropout",
                         lua_pushfstring(L, "expected a probability p in [0, 1), got %s",
                                         ok ? luaL_tolstring(L, 1, NULL) : luaL_typename(L, 1)));
  rlb_check_options(L, 2, "Dropout", known);
  rl_rng *g = rlb_opt_rng(L, 2);
  int rng_idx = lua_gettop(L);
  rlb_module *u = rlb_newmodule(L);
  rlb_keep(L, -1, rng_idx);
  return finish_module(L, u, rl_dropout_new((real)p, g));
}

/* ---------------------------------------------------------------- losses */

typedef enum { LOSS_CROSS_ENTROPY, LOSS_BCE_WITH_LOGITS } loss_kind;
static const char *const loss_names[] = {"cross_entropy", "bce_with_logits"};

/* Loss userdata; uservalue 1 is the gradient tensor of the last forward (nil before). */
typedef struct rlb_loss {
  loss_kind kind;
} rlb_loss;

static int new_loss(lua_State *L, loss_kind kind) {
  check_no_options(L, kind == LOSS_CROSS_ENTROPY ? "CrossEntropy" : "BCEWithLogits");
  rlb_loss *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->kind = kind;
  luaL_setmetatable(L, RLB_LOSS);
  return 1;
}

static int l_cross_entropy(lua_State *L) { return new_loss(L, LOSS_CROSS_ENTROPY); }
static int l_bce_with_logits(lua_State *L) { return new_loss(L, LOSS_BCE_WITH_LOGITS); }

/* loss:forward(logits, labels) -> mean loss; logits: tensor or sets (their values), labels: tensor or list */
static int loss_forward(lua_State *L) {
  rlb_loss *u = luaL_checkudata(L, 1, RLB_LOSS);
  if (lua_type(L, 2) == LUA_TTABLE) rlb_checktensorlike(L, 2);
  rl_batch b;
  rlb_checkbatch(L, 2, &b);
  rl_tensor logits = b.values;
  rlb_tensor *labels = rlb_checktensorlike(L, 3);
  if (u->kind == LOSS_BCE_WITH_LOGITS && (logits.ndim > 2 || (logits.ndim == 2 && logits.shape[1] != 1)))
    return luaL_argerror(L, 2, lua_pushfstring(L, "bce_with_logits: expected logits of shape B x 1 (or B), got %d-D "
                                                  "with %d columns", logits.ndim, (int)rl_cols(&logits)));
  int64_t rows = u->kind == LOSS_CROSS_ENTROPY ? rl_rows(&logits) : logits.numel;
  if (labels->t.numel != rows)
    return luaL_argerror(L, 3, lua_pushfstring(L, "expected %d %s (one per row of the logits), got %d",
                                                (int)rows, u->kind == LOSS_CROSS_ENTROPY ? "labels" : "targets",
                                                (int)labels->t.numel));
  /* gradient tensor of the logits' shape, kept for backward */
  rlb_tensor *g = rlb_newtensor(L, logits.ndim, logits.shape);
  real loss;
  int rc = u->kind == LOSS_CROSS_ENTROPY ? rl_cross_entropy(&logits, labels->t.data, &loss, &g->t)
                                         : rl_bce_with_logits(&logits, labels->t.data, &loss, &g->t);
  if (rc) {
    /* say which argument is at fault: the labels (range/integrality) or the logits (shape/finiteness) */
    int arg = strstr(rl_error(), "label") || strstr(rl_error(), "target") ? 3 : 2;
    return rlb_argerror(L, arg);
  }
  lua_setiuservalue(L, 1, 1);
  lua_pushnumber(L, (lua_Number)loss);
  return 1;
}

/* loss:backward() -> gradient of the mean loss w.r.t. the logits of the last forward (tensor). Each forward
** creates a new gradient tensor, so a returned gradient is never overwritten by a later forward. */
static int loss_backward(lua_State *L) {
  rlb_loss *u = luaL_checkudata(L, 1, RLB_LOSS);
  if (lua_getiuservalue(L, 1, 1) != LUA_TUSERDATA)
    return luaL_error(L, "%s: backward called before forward (call loss:forward(logits, labels) first)",
                      loss_names[u->kind]);
  return 1;
}

static int loss_kind_name(lua_State *L) {
  rlb_loss *u = luaL_checkudata(L, 1, RLB_LOSS);
  lua_pushstring(L, loss_names[u->kind]);
  return 1;
}

static int loss_tostring(lua_State *L) {
  rlb_loss *u = luaL_checkudata(L, 1, RLB_LOSS);
  lua_pushfstring(L, "rotlab.loss(%s)", loss_names[u->kind]);
  return 1;
}

static const luaL_Reg loss_methods[] = {
    {"forward", loss_forward}, {"backward", loss_backward}, {"kind", loss_kind_name}, {NULL, NULL}};

int rlb_open_nn(lua_State *L) {
  luaL_newmetatable(L, RLB_LOSS);
  lua_newtable(L);
  luaL_setfuncs(L, loss_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, loss_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushstring(L, RLB_LOSS);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"nn_Linear", l_linear},
                                 {"nn_ReLU", l_relu},
                                 {"nn_ELU", l_elu},
                                 {"nn_Tanh", l_tanh},
                                 {"nn_Sigmoid", l_sigmoid},
                                 {"nn_Softplus", l_softplus},
                                 {"nn_Dropout", l_dropout},
                                 {"nn_CrossEntropy", l_cross_entropy},
                                 {"nn_BCEWithLogits", l_bce_with_logits},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  return 0;
}
