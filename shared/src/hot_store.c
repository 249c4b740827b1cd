/* hot_store.c: placeholder, being written. */
