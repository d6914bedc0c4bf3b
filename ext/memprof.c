/* memprof.c - placeholder: the component registers nothing yet. */
#include "module.h"

int memprof_module_exec(PyObject *module)
{
    (void)module;
    return 0;
}
