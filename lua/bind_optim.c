/*
** bind_optim.c -- Lua binding of core/optim (placeholder until the area lands).
*/
#include "bind.h"

int rlb_open_optim(lua_State *L) {
  (void)L;
  return 0;
}
