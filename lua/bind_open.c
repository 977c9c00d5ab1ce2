/*
** bind_open.c -- luaopen_rotlab_core: builds the `rotlab.core` table from every area of the binding.
*/
#include "bind.h"

int luaopen_rotlab_core(lua_State *L);

int luaopen_rotlab_core(lua_State *L) {
  lua_newtable(L);
  rlb_open_core(L);
  rlb_open_nn(L);
  rlb_open_pool(L);
  rlb_open_baselines(L);
  rlb_open_optim(L);
  rlb_open_data(L);
  rlb_open_db(L);
  rlb_open_proc(L);
  rlb_open_rotp(L);
  rlb_open_hrotp(L); /* after rotp: builds its parts with core.pool_rotp */
  rlb_open_swe(L);
  rlb_open_mil(L);
  return 1;
}
