/* cold_mongo.c: placeholder, being written. */
