/* interp.c - placeholder */
