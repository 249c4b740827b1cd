// init-replicaset.js: brings the MongoDB replica set of mongo.yaml to the
// shape mongo-config describes, and makes sure the services' user exists.
// Run by the mongo-init Job as `mongosh --nodb init-replicaset.js`; safe to
// run any number of times (every step first looks at what is there).
//
//   1. Wait until mongo-0 answers.
//   2. Not initiated yet: initiate the set with mongo-0 alone. The other
//      members cannot be in the first config: their first start created the
//      root user, so they hold data, and MongoDB only initiates a set whose
//      other members are empty. Added later, they resync from the primary.
//   3. Add each member of mongo-0 .. mongo-(MONGO_MEMBERS-1) that the config
//      lacks, one per reconfig (MongoDB allows one voting member at a time).
//      Members are never removed here: shrinking a set is a decision for a
//      person (docs/DEPLOY.md).
//   4. Create the services' user (readWrite on the snaptext database), or
//      reset its password and roles to the Secret's.
//
// Environment (from the Job): MONGO_ROOT_USERNAME, MONGO_ROOT_PASSWORD,
// MONGO_APP_USERNAME, MONGO_APP_PASSWORD (Secret snaptext-secrets),
// MONGO_REPLICA_SET, MONGO_MEMBERS (ConfigMap mongo-config), MONGO_SERVICE
// (the headless Service, "mongo"). Passwords never appear in argv or output.

const env = process.env;

function required(name) {
  const v = env[name];
  if (!v) {
    throw new Error(`${name} is not set`);
  }
  return v;
}

const rootUser = required("MONGO_ROOT_USERNAME");
const rootPassword = required("MONGO_ROOT_PASSWORD");
const appUser = required("MONGO_APP_USERNAME");
const appPassword = required("MONGO_APP_PASSWORD");
const setName = required("MONGO_REPLICA_SET");
const service = env.MONGO_SERVICE || "mongo";
const memberCount = parseInt(required("MONGO_MEMBERS"), 10);
if (!(memberCount >= 1 && memberCount <= 7)) {
  throw new Error(`MONGO_MEMBERS=${env.MONGO_MEMBERS}: must be an integer between 1 and 7`);
}

const hosts = [];
for (let i = 0; i < memberCount; i++) {
  hosts.push(`mongo-${i}.${service}:27017`);
}
const auth = `${encodeURIComponent(rootUser)}:${encodeURIComponent(rootPassword)}@`;
const directUri = `mongodb://${auth}${hosts[0]}/admin?authSource=admin&directConnection=true`;

function log(msg) {
  print(`init-replicaset: ${msg}`);
}

// Retries fn until it returns a value other than undefined, for at most
// `seconds`; the Job's backoff restarts the whole script after that.
function retry(what, seconds, fn) {
  const deadline = Date.now() + seconds * 1000;
  let last = null;
  for (;;) {
    try {
      const v = fn();
      if (v !== undefined) {
        return v;
      }
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting for ${what}` + (last ? `: ${last.message}` : ""));
    }
    sleep(2000);
  }
}

// 1. mongo-0 answers.
const direct = retry("mongo-0", 300, () => {
  const c = new Mongo(directUri);
  c.getDB("admin").runCommand({ ping: 1 });
  return c;
});
const directAdmin = direct.getDB("admin");

// 2. Initiate with mongo-0 alone.
const status = directAdmin.runCommand({ replSetGetStatus: 1 });
if (status.ok === 1) {
  log(`replica set ${status.set} already initiated`);
} else if (status.codeName === "NotYetInitialized") {
  log(`initiating replica set ${setName} with ${hosts[0]}`);
  const r = directAdmin.runCommand({
    replSetInitiate: { _id: setName, members: [{ _id: 0, host: hosts[0] }] },
  });
  if (r.ok !== 1 && r.codeName !== "AlreadyInitialized") {
    throw new Error(`replSetInitiate failed: ${r.codeName || r.errmsg}`);
  }
} else {
  throw new Error(`replSetGetStatus failed: ${status.codeName || status.errmsg}`);
}

// From here on, talk to whichever member is primary.
const setUri = `mongodb://${auth}${hosts.join(",")}/admin?authSource=admin&replicaSet=${encodeURIComponent(setName)}`;
const admin = retry("a primary", 300, () => {
  const c = new Mongo(setUri);
  const a = c.getDB("admin");
  return a.runCommand({ hello: 1 }).isWritablePrimary ? a : undefined;
});

// 3. Add missing members, one reconfig each.
for (const host of hosts) {
  const conf = admin.runCommand({ replSetGetConfig: 1 }).config;
  if (conf.members.some((m) => m.host === host)) {
    continue;
  }
  const nextId = Math.max(...conf.members.map((m) => m._id)) + 1;
  conf.members.push({ _id: nextId, host: host });
  conf.version += 1;
  log(`adding ${host} as member ${nextId}`);
  retry(`reconfig adding ${host}`, 600, () => {
    const r = admin.runCommand({ replSetReconfig: conf, maxTimeMS: 60000 });
    if (r.ok !== 1) {
      throw new Error(r.codeName || r.errmsg);
    }
    return true;
  });
}

// 4. The services' user.
const roles = [{ role: "readWrite", db: "snaptext" }];
if (admin.getUser(appUser)) {
  admin.updateUser(appUser, { pwd: appPassword, roles: roles });
  log(`user ${appUser} updated`);
} else {
  admin.createUser({ user: appUser, pwd: appPassword, roles: roles });
  log(`user ${appUser} created`);
}
log("done");
