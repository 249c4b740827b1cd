/* ingest.h: the handlers of the ingest service, for its route table. */
#ifndef INGEST_H
#define INGEST_H

#include "snap/service.h"

/* POST /chat: validates, takes an id, records the message durably, then
 * makes it deliverable (201 {"id"} + Location). */
void ingest_chat_send(struct http_req *r);

#endif
