/* handlers.c - placeholder */
