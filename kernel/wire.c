/* wire.c - placeholder */
