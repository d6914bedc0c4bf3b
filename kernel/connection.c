/* connection.c - placeholder */
