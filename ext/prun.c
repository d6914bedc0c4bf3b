/* prun.c - %prun, %%prun and %pstats. */
#include "funcprof.h"
#include "module.h"

int prun_module_exec(PyObject *module)
{
    (void)module;
    return 0;
}
