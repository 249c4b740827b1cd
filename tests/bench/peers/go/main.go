// main.go: the classic snaptext API as a Go programmer would write it on
// a first pass, a reference stack for tests/bench (docs/PERFORMANCE.md).
//
// net/http, redigo and go-sqlite3, one process. POST /chat takes an id
// from Redis INCR, inserts the row into SQLite, then stores the hot copy
// (SET with EX) and appends the id to the recipient's inbox list.
// GET /chats/{username} empties the inbox in one MULTI, fetches the texts
// still alive, deletes them and marks the rows expired.
//
// Durability: SQLite in WAL mode with synchronous=NORMAL (a commit reaches
// the disk at the next checkpoint), Redis as the harness starts it (no
// persistence). PEER_DURABLE=1 asks for synchronous=FULL instead; the
// harness then starts Redis with appendfsync always.
//
// Settings: PEER_LISTEN (127.0.0.1:8000), PEER_REDIS (127.0.0.1:6379),
// PEER_DB (chats.db), PEER_DURABLE.
package main

import (
	"database/sql"
	"encoding/json"
	"log"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	_ "github.com/mattn/go-sqlite3"
)

const schema = `CREATE TABLE IF NOT EXISTS chats (
	id INTEGER PRIMARY KEY,
	username TEXT NOT NULL,
	text TEXT NOT NULL,
	expiration_date TEXT NOT NULL)`

type server struct {
	pool *redis.Pool
	db   *sql.DB
}

type sendRequest struct {
	Username string `json:"username"`
	Text     string `json:"text"`
	Timeout  *int   `json:"timeout"`
}

type message struct {
	ID   int64  `json:"id"`
	Text string `json:"text"`
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func reply(w http.ResponseWriter, status int, body interface{}) {
	out, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(out)
}

func fail(w http.ResponseWriter, status int, code string) {
	reply(w, status, map[string]string{"error": code})
}

func (s *server) send(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Username == "" || req.Text == "" {
		fail(w, http.StatusBadRequest, "invalid_json")
		return
	}
	timeout := 60
	if req.Timeout != nil {
		timeout = *req.Timeout
	}
	if timeout < 1 {
		fail(w, http.StatusBadRequest, "invalid_field")
		return
	}
	rc := s.pool.Get()
	defer rc.Close()
	id, err := redis.Int64(rc.Do("INCR", "chat:next_id"))
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	expires := stamp(time.Now().Add(time.Duration(timeout) * time.Second))
	if _, err := s.db.Exec("INSERT INTO chats (id, username, text, expiration_date) VALUES (?, ?, ?, ?)",
		id, req.Username, req.Text, expires); err != nil {
		fail(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	rc.Send("MULTI")
	rc.Send("SET", "chat:"+itoa(id), req.Text, "EX", timeout)
	rc.Send("RPUSH", "inbox:"+req.Username, id)
	if _, err := rc.Do("EXEC"); err != nil {
		fail(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	w.Header().Set("Location", "/chat/"+itoa(id))
	reply(w, http.StatusCreated, map[string]int64{"id": id})
}

func (s *server) read(w http.ResponseWriter, r *http.Request, username string) {
	rc := s.pool.Get()
	defer rc.Close()
	rc.Send("MULTI")
	rc.Send("LRANGE", "inbox:"+username, 0, -1)
	rc.Send("DEL", "inbox:"+username)
	res, err := redis.Values(rc.Do("EXEC"))
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "unavailable")
		return
	}
	ids, _ := redis.Int64s(res[0], nil)
	out := []message{}
	if len(ids) > 0 {
		keys := make([]interface{}, len(ids))
		for i, id := range ids {
			keys[i] = "chat:" + itoa(id)
		}
		texts, err := redis.Values(rc.Do("MGET", keys...))
		if err != nil {
			fail(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
		rc.Do("DEL", keys...)
		now := stamp(time.Now())
		tx, err := s.db.Begin()
		if err != nil {
			fail(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
		for i, t := range texts {
			if t == nil {
				continue // its hot copy expired: never returned
			}
			out = append(out, message{ID: ids[i], Text: string(t.([]byte))})
			tx.Exec("UPDATE chats SET expiration_date = ? WHERE id = ?", now, ids[i])
		}
		if err := tx.Commit(); err != nil {
			fail(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
	}
	reply(w, http.StatusOK, out)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/chat" && r.Method == http.MethodPost:
		s.send(w, r)
	case strings.HasPrefix(r.URL.Path, "/chats/") && r.Method == http.MethodGet:
		name, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/chats/"))
		if err != nil || name == "" {
			fail(w, http.StatusBadRequest, "invalid_field")
			return
		}
		s.read(w, r, name)
	case r.URL.Path == "/readyz" || r.URL.Path == "/healthz":
		reply(w, http.StatusOK, map[string]string{"status": "ok"})
	default:
		fail(w, http.StatusNotFound, "not_found")
	}
}

func main() {
	sync := "NORMAL"
	if os.Getenv("PEER_DURABLE") == "1" {
		sync = "FULL"
	}
	db, err := sql.Open("sqlite3", "file:"+env("PEER_DB", "chats.db")+
		"?_journal_mode=WAL&_synchronous="+sync+"&_busy_timeout=5000")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(schema); err != nil {
		log.Fatal(err)
	}
	addr := env("PEER_REDIS", "127.0.0.1:6379")
	pool := &redis.Pool{MaxIdle: 64, Dial: func() (redis.Conn, error) { return redis.Dial("tcp", addr) }}
	listen := env("PEER_LISTEN", "127.0.0.1:8000")
	log.Printf("listening on %s (synchronous=%s)", listen, sync)
	log.Fatal(http.ListenAndServe(listen, &server{pool: pool, db: db}))
}
