/* transform.c - placeholder */
