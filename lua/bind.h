/*
** bind.h -- shared helpers of the Lua binding: the tensor, sets, rng and module userdata, and option parsing.
** The binding is thin: check arguments, call core, push results. Only the binding raises Lua errors.
*/
#ifndef RLB_BIND_H
#define RLB_BIND_H

#include <lauxlib.h>
#include <lua.h>

#include "../core/nn/module.h"
#include "../core/rng.h"
#include "../core/sets.h"
#include "../core/tensor.h"

#define RLB_TENSOR "rotlab.tensor"
#define RLB_SETS "rotlab.sets"
#define RLB_MODULE "rotlab.module"
#define RLB_RNG "rotlab.rng"
#define RLB_DATASET "rotlab.dataset"

/* Tensor userdata: either owns its data (stored inline, so the Lua GC knows the size) or is a view whose
** owner (uservalue 1) keeps the memory alive. */
typedef struct rlb_tensor {
  rl_tensor t;
  int is_view;
} rlb_tensor;

/* Sets userdata: a ragged batch; uservalue 1 is the values tensor; offsets are stored inline. */
typedef struct rlb_sets {
  rl_batch b;
  int64_t storage[]; /* all offset levels, back to back */
} rlb_sets;

/* Module userdata: owns the core module; uservalue 1 is a table of Lua objects the module relies on (rng...). */
typedef struct rlb_module {
  rl_module *m;
} rlb_module;

/* Tensors */
rlb_tensor *rlb_newtensor(lua_State *L, int ndim, const int64_t *shape); /* zero-filled, pushed */
rlb_tensor *rlb_newmatrix(lua_State *L, int64_t rows, int64_t cols);
rlb_tensor *rlb_pushview(lua_State *L, rl_tensor view, int owner_idx); /* owner kept alive */
rlb_tensor *rlb_checktensor(lua_State *L, int idx);
rlb_tensor *rlb_totensor(lua_State *L, int idx); /* NULL if not a tensor */
/* Accepts a tensor or a (nested) table of numbers at idx and returns a tensor (a new one replaces idx). */
rlb_tensor *rlb_checktensorlike(lua_State *L, int idx);

/* Batches: a tensor is a batch of plain rows; a sets userdata carries its levels. */
void rlb_checkbatch(lua_State *L, int idx, rl_batch *out);
rlb_sets *rlb_tosets(lua_State *L, int idx);
/* Pushes a sets object over values (at values_idx) with the given levels (copied). */
rlb_sets *rlb_pushsets(lua_State *L, int values_idx, int nlevels, const int64_t *const *offsets,
                       const int64_t *count);

/* Rng */
rl_rng *rlb_checkrng(lua_State *L, int idx);
rl_rng *rlb_default_rng(lua_State *L); /* the generator set by rl.manual_seed (created on first use) */
/* The rng in option table field "rng" if present, else the default one; pushes the rng userdata. */
rl_rng *rlb_opt_rng(lua_State *L, int opts_idx);

/* Modules */
rlb_module *rlb_newmodule(lua_State *L); /* pushes an empty (m = NULL) module handle with a keep table */
rl_module *rlb_checkmodule(lua_State *L, int idx);
void rlb_keep(lua_State *L, int module_idx, int value_idx); /* module keeps value alive */
/* Registers methods available on modules of one kind (e.g. "rotp": plan, values). */
void rlb_register_methods(lua_State *L, const char *kind, const luaL_Reg *methods);
/* Raises the core error as a Lua error (never returns). */
int rlb_error(lua_State *L);
/* Raises the core error as an argument error for argument arg (never returns). */
int rlb_argerror(lua_State *L, int arg);

/* Options: an optional table of named options at idx. Unknown names raise an error listing the known ones. */
void rlb_check_options(lua_State *L, int idx, const char *fname, const char *const *known);
lua_Integer rlb_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def);
lua_Number rlb_opt_number(lua_State *L, int idx, const char *key, lua_Number def);
int rlb_opt_boolean(lua_State *L, int idx, const char *key, int def);
const char *rlb_opt_string(lua_State *L, int idx, const char *key, const char *def);
/* Returns index into names of option key (def if absent); raises listing the choices otherwise. */
int rlb_opt_choice(lua_State *L, int idx, const char *key, const char *def, const char *const *names);
/* 1 if the option is present (not nil). */
int rlb_opt_present(lua_State *L, int idx, const char *key);

/* Datasets (bind_data.c): the core dataset of the dataset userdata at idx (raises if it is not one or closed). */
struct rl_dataset *rlb_checkdataset(lua_State *L, int idx);

/* Area openers: each adds its functions to the table on top of the stack. */
int rlb_open_core(lua_State *L);  /* tensors, sets, rng, module methods */
int rlb_open_nn(lua_State *L);    /* Linear, activations, dropout, losses */
int rlb_open_pool(lua_State *L);  /* poolings */
int rlb_open_baselines(lua_State *L); /* baseline poolings: mixed, deepset, set2set, gated attention, dynamic, gnp */
int rlb_open_optim(lua_State *L); /* optimizer steps, schedulers, clipping */
int rlb_open_data(lua_State *L);  /* HDF5 datasets, splits, batching */
int rlb_open_db(lua_State *L);    /* SQLite */
int rlb_open_proc(lua_State *L);  /* processes (grid launcher) */
int rlb_open_rotp(lua_State *L);  /* ROTP pooling: core.pool_rotp and its methods */
int rlb_open_hrotp(lua_State *L); /* hierarchical ROTP: core.pool_hrotp (needs core.pool_rotp) */
int rlb_open_swe(lua_State *L);
int rlb_open_mil(lua_State *L);   /* MIL converter, standardisation (after rlb_open_data) */

#endif
