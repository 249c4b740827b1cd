/* cold_store.c: placeholder, being written. */
