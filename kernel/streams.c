/* streams.c - placeholder */
