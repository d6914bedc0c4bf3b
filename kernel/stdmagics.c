/* stdmagics.c - the kernel's standard magics (placeholder: none yet). */
#include "stdmagics.h"

int stdmagics_register(void)
{
    return 0;
}

void stdmagics_after_cell(void)
{
}
