/* magics.c - placeholder */
