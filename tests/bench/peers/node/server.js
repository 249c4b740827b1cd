// server.js: the classic snaptext API as a Node.js developer would write
// it on a first pass, a reference stack for tests/bench
// (docs/PERFORMANCE.md).
//
// fastify, ioredis and better-sqlite3, 2 workers under node's cluster
// module sharing one port. POST /chat takes an id from Redis INCR, inserts
// the row into SQLite (better-sqlite3 is synchronous: the worker waits for
// the commit), then stores the hot copy (SET with EX) and pushes the id
// onto the recipient's inbox list. GET /chats/:username empties the inbox
// in one MULTI, fetches the texts still alive, deletes them and marks the
// rows expired.
//
// Durability: SQLite in WAL mode with synchronous=NORMAL (a commit reaches
// the disk at the next checkpoint), Redis as the harness starts it (no
// persistence). PEER_DURABLE=1 asks for synchronous=FULL instead; the
// harness then starts Redis with appendfsync always.
//
// Settings: PEER_LISTEN (127.0.0.1:8000), PEER_REDIS (127.0.0.1:6379),
// PEER_DB (chats.db), PEER_DURABLE, PEER_WORKERS (2).
'use strict';

const cluster = require('node:cluster');

const SCHEMA = `CREATE TABLE IF NOT EXISTS chats (id INTEGER PRIMARY KEY,
           username TEXT NOT NULL, text TEXT NOT NULL, expiration_date TEXT NOT NULL)`;

if (cluster.isPrimary) {
  // The file's WAL mode and table are made once, here, before the workers
  // open it: two first connections switching a new file to WAL at once can
  // fail with "database is locked" whatever the busy timeout.
  const Database = require('better-sqlite3');
  const init = new Database(process.env.PEER_DB || 'chats.db', { timeout: 5000 });
  init.pragma('journal_mode = WAL');
  init.exec(SCHEMA);
  init.close();
  const workers = Number(process.env.PEER_WORKERS || 2);
  for (let i = 0; i < workers; i++) cluster.fork();
  let stopping = false;
  cluster.on('exit', (w, code) => {
    if (!stopping) {
      console.error(`worker ${w.process.pid} exited (${code})`);
      process.exit(1);
    }
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  process.on('SIGTERM', () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
  });
} else {
  startWorker();
}

function startWorker() {
  const Fastify = require('fastify');
  const Redis = require('ioredis');
  const Database = require('better-sqlite3');

  const [redisHost, redisPort] = (process.env.PEER_REDIS || '127.0.0.1:6379').split(':');
  const redis = new Redis({ host: redisHost, port: Number(redisPort) });
  const db = new Database(process.env.PEER_DB || 'chats.db', { timeout: 5000 });
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${process.env.PEER_DURABLE === '1' ? 'FULL' : 'NORMAL'}`);
  db.exec(SCHEMA);
  const insert = db.prepare(
    'INSERT INTO chats (id, username, text, expiration_date) VALUES (?, ?, ?, ?)');
  const expire = db.prepare('UPDATE chats SET expiration_date = ? WHERE id = ?');
  const expireAll = db.transaction((now, ids) => { for (const id of ids) expire.run(now, id); });
  const stamp = (ms) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

  const app = Fastify({ logger: false });

  app.post('/chat', async (req, reply) => {
    const { username, text } = req.body || {};
    const timeout = req.body && req.body.timeout != null ? req.body.timeout : 60;
    if (typeof username !== 'string' || !username || typeof text !== 'string' || !text) {
      return reply.code(400).send({ error: 'invalid_json' });
    }
    if (!Number.isInteger(timeout) || timeout < 1) {
      return reply.code(400).send({ error: 'invalid_field' });
    }
    const id = await redis.incr('chat:next_id');
    insert.run(id, username, text, stamp(Date.now() + timeout * 1000));
    await redis.multi().set(`chat:${id}`, text, 'EX', timeout).rpush(`inbox:${username}`, id).exec();
    return reply.code(201).header('Location', `/chat/${id}`).send({ id });
  });

  app.get('/chats/:username', async (req) => {
    const inbox = `inbox:${req.params.username}`;
    const [[, ids]] = await redis.multi().lrange(inbox, 0, -1).del(inbox).exec();
    if (ids.length === 0) return [];
    const keys = ids.map((id) => `chat:${id}`);
    const texts = await redis.mget(keys);
    await redis.del(keys);
    const out = [];
    texts.forEach((text, i) => { if (text !== null) out.push({ id: Number(ids[i]), text }); });
    if (out.length) expireAll(stamp(Date.now()), out.map((m) => m.id));
    return out;
  });

  app.get('/readyz', async () => ({ status: 'ok' }));
  app.get('/healthz', async () => ({ status: 'ok' }));

  const [host, port] = (process.env.PEER_LISTEN || '127.0.0.1:8000').split(':');
  app.listen({ host, port: Number(port) }).then(() => {
    console.log(`worker ${process.pid} listening on ${host}:${port}`);
  }).catch((err) => { console.error(err); process.exit(1); });
}
