// mongo_init_sim.js: runs k8s/base/mongo/init-replicaset.js against a
// simulated replica set, to check that it is idempotent and follows
// MongoDB's rules (initiate with one member while the others hold data, add
// one voting member per reconfig, bump the config version).
//
//   node mongo_init_sim.js path/to/init-replicaset.js
//
// Prints {"scenarios": [{"name", "ok", "detail"}]}. A stand-in for mongosh's
// globals (Mongo, print, sleep, process.env), not for MongoDB itself: the
// real thing only runs in a cluster (docs/DEPLOY.md).

"use strict";

const fs = require("fs");
const vm = require("vm");

const SECRET = "s3cr3t-root-pw";
const APP_SECRET = "s3cr3t-app-pw";

function newCluster() {
  return { initiated: false, config: null, users: {}, calls: [], printed: [] };
}

function fakeMongo(cluster) {
  class DB {
    constructor(name) {
      this.name = name;
    }
    runCommand(cmd) {
      const op = Object.keys(cmd)[0];
      cluster.calls.push(op);
      switch (op) {
        case "ping":
          return { ok: 1 };
        case "replSetGetStatus":
          return cluster.initiated
            ? { ok: 1, set: cluster.config._id }
            : { ok: 0, codeName: "NotYetInitialized" };
        case "replSetInitiate": {
          if (cluster.initiated) {
            return { ok: 0, codeName: "AlreadyInitialized" };
          }
          // MongoDB: the other members must be empty; theirs are not (root user).
          if (cmd.replSetInitiate.members.length !== 1) {
            return { ok: 0, codeName: "InvalidReplicaSetConfig", errmsg: "has data already" };
          }
          cluster.initiated = true;
          cluster.config = JSON.parse(JSON.stringify(cmd.replSetInitiate));
          cluster.config.version = 1;
          return { ok: 1 };
        }
        case "hello":
          return { ok: 1, isWritablePrimary: cluster.initiated };
        case "replSetGetConfig":
          return { ok: 1, config: JSON.parse(JSON.stringify(cluster.config)) };
        case "replSetReconfig": {
          const next = cmd.replSetReconfig;
          if (next.version !== cluster.config.version + 1) {
            return { ok: 0, codeName: "NewReplicaSetConfigurationIncompatible" };
          }
          const before = new Set(cluster.config.members.map((m) => m.host));
          const added = next.members.filter((m) => !before.has(m.host));
          const ids = new Set(next.members.map((m) => m._id));
          if (added.length > 1 || ids.size !== next.members.length) {
            return { ok: 0, codeName: "NewReplicaSetConfigurationIncompatible" };
          }
          cluster.config = JSON.parse(JSON.stringify(next));
          return { ok: 1 };
        }
        default:
          throw new Error(`unexpected command ${op}`);
      }
    }
    getUser(name) {
      cluster.calls.push("getUser");
      return cluster.users[name] || null;
    }
    createUser(spec) {
      cluster.calls.push("createUser");
      if (cluster.users[spec.user]) {
        throw new Error("user exists");
      }
      cluster.users[spec.user] = { pwd: spec.pwd, roles: spec.roles };
    }
    updateUser(name, spec) {
      cluster.calls.push("updateUser");
      if (!cluster.users[name]) {
        throw new Error("no such user");
      }
      cluster.users[name] = { pwd: spec.pwd, roles: spec.roles };
    }
  }
  return class Mongo {
    constructor(uri) {
      cluster.uris = (cluster.uris || []).concat([uri]);
    }
    getDB(name) {
      return new DB(name);
    }
  };
}

function run(source, cluster, members) {
  const env = {
    MONGO_ROOT_USERNAME: "root",
    MONGO_ROOT_PASSWORD: SECRET,
    MONGO_APP_USERNAME: "snaptext",
    MONGO_APP_PASSWORD: APP_SECRET,
    MONGO_REPLICA_SET: "rs0",
    MONGO_MEMBERS: String(members),
    MONGO_SERVICE: "mongo",
  };
  cluster.calls = [];
  const sandbox = {
    Mongo: fakeMongo(cluster),
    print: (s) => cluster.printed.push(String(s)),
    sleep: () => {},
    process: { env: env },
  };
  vm.runInNewContext(source, sandbox, { filename: "init-replicaset.js", timeout: 10000 });
}

function hosts(cluster) {
  return cluster.config ? cluster.config.members.map((m) => m.host) : [];
}

function main(argv) {
  const source = fs.readFileSync(argv[0], "utf8");
  const scenarios = [];
  const check = (name, fn) => {
    try {
      const detail = fn();
      scenarios.push({ name: name, ok: !detail, detail: detail || "" });
    } catch (e) {
      scenarios.push({ name: name, ok: false, detail: String(e && e.stack || e) });
    }
  };
  const want3 = ["mongo-0.mongo:27017", "mongo-1.mongo:27017", "mongo-2.mongo:27017"];

  const c = newCluster();
  check("fresh 3-member set: initiated with mongo-0, others added, user created", () => {
    run(source, c, 3);
    if (JSON.stringify(hosts(c)) !== JSON.stringify(want3)) return `members ${hosts(c)}`;
    if (c.calls.filter((x) => x === "replSetReconfig").length !== 2) return `calls ${c.calls}`;
    if (!c.users.snaptext || c.users.snaptext.pwd !== APP_SECRET) return "no app user";
    if (JSON.stringify(c.users.snaptext.roles) !== JSON.stringify([{ role: "readWrite", db: "snaptext" }])) {
      return "wrong roles";
    }
    return "";
  });
  check("second run changes nothing but the user's password", () => {
    const version = c.config.version;
    run(source, c, 3);
    if (c.calls.includes("replSetInitiate") || c.calls.includes("replSetReconfig")) return `calls ${c.calls}`;
    if (c.config.version !== version) return "config version changed";
    if (!c.calls.includes("updateUser") || c.calls.includes("createUser")) return `calls ${c.calls}`;
    return "";
  });
  check("a lower MONGO_MEMBERS removes no member", () => {
    run(source, c, 1);
    return JSON.stringify(hosts(c)) === JSON.stringify(want3) ? "" : `members ${hosts(c)}`;
  });
  const d = newCluster();
  check("1-member set, later grown to 3", () => {
    run(source, d, 1);
    if (JSON.stringify(hosts(d)) !== JSON.stringify(want3.slice(0, 1))) return `members ${hosts(d)}`;
    run(source, d, 3);
    return JSON.stringify(hosts(d)) === JSON.stringify(want3) ? "" : `members ${hosts(d)}`;
  });
  check("MONGO_MEMBERS=0 is refused", () => {
    try {
      run(source, newCluster(), 0);
    } catch (e) {
      return /MONGO_MEMBERS/.test(String(e)) ? "" : `wrong error ${e}`;
    }
    return "accepted 0 members";
  });
  check("no password in the script's output", () => {
    const out = c.printed.concat(d.printed).join("\n");
    return out.includes(SECRET) || out.includes(APP_SECRET) ? "a password was printed" : "";
  });
  process.stdout.write(JSON.stringify({ scenarios: scenarios }) + "\n");
  return 0;
}

process.exitCode = main(process.argv.slice(2));
