/* mprun.c - placeholder. */
#include "module.h"
