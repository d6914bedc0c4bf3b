/* timing.h - %time, %%time, %timeit and %%timeit, and the TimeitResult type
 * that `%timeit -o` returns. The statements run in the user namespace. */
#ifndef PYROMETER_TIMING_H
#define PYROMETER_TIMING_H

#include <stddef.h>

/* Registers %time/%%time and %timeit/%%timeit and adds TimeitResult to the
 * _pyrometer_kernel module. GIL held. Returns 0, or -1 with an exception set. */
int timing_register(void);

/* Formats a time span as IPython does: "%.<precision>g" in s, ms, µs or ns
 * (the largest unit that keeps the value at least 1), or "1min 5s" style
 * from a minute up. Writes a NUL-terminated string of at most len bytes. */
void timing_format(double seconds, int precision, char *buf, size_t len);

#endif
