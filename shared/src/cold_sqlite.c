/* cold_sqlite.c: placeholder, being written. */
