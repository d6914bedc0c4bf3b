/* dispatch.c - placeholder */
