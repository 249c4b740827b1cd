"""check_k8s.py: the deploy_k8s test (ctest -L deploy).

Renders k8s/overlays/dev and k8s/overlays/prod offline (kustomize.py beside
this file) and checks every object:

  - schema: each object against the Kubernetes OpenAPI schemas, and for
    unknown fields (k8s_schema.js, node packages from package-lock.json:
    `npm ci --prefix tests/deploy`);
  - policy: every container has requests and limits, runs as non-root with
    a read-only root filesystem, no privilege escalation and no
    capabilities, under RuntimeDefault seccomp, from a pinned image; every
    long-running container has readiness and liveness probes; the services
    have /readyz and /healthz probes, an autoscaler, a disruption budget,
    Prometheus annotations, a ClusterIP and a headless Service; references
    to ConfigMaps and Secrets resolve; SNAPTEXT_* names are the programs'
    own; the HAProxy config copies equal deploy/haproxy/; what each overlay
    promises (dev: one of each; prod: LoadBalancer, 3-member MongoDB,
    Redis + Sentinels) holds;
  - the tools themselves: the validator and the policy checks reject
    deliberately broken objects, the renderer passes its own cases and, where
    kubectl is installed, renders exactly what `kubectl kustomize` renders;
    the mongo-init script is idempotent against a simulated replica set.

No object is exempt from readOnlyRootFilesystem: Redis and MongoDB write
only to their volumes (data, and emptyDirs for /tmp, /data/configdb, the
Sentinel configuration). Jobs are exempt from probes (they end).
Prints "N passed, N failed" last.
"""

import copy
import json
import os
import re
import subprocess
import tempfile

import yaml

import deploy_util as du
import kustomize
import snaptest
from deploy_util import Checks, Skip

OVERLAYS = ("dev", "prod")
NAMESPACE = "snaptext"
SERVICES = {"users": 8081, "ingest": 8082, "fetch": 8083}
# Created in the cluster by the operator for prod (docs/DEPLOY.md); never
# rendered from the repository.
EXTERNAL_SECRETS = {"prod": {"snaptext-secrets"}}
BACKENDS_K8S = du.path("deploy", "haproxy", "backends-k8s.cfg")
COPIES = {
    du.path("k8s", "base", "haproxy", "haproxy.cfg"): du.HAPROXY_CFG,
    du.path("k8s", "base", "haproxy", "backends.cfg"): BACKENDS_K8S,
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def overlay_dir(name):
    return du.path("k8s", "overlays", name)


def ident(obj):
    return "%s/%s" % (obj.get("kind"), (obj.get("metadata") or {}).get("name"))


def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def find(objs, kind, name):
    for o in objs:
        if o.get("kind") == kind and o["metadata"]["name"] == name:
            return o
    return None


def generated(objs, kind, name):
    """A generated ConfigMap/Secret by its name before the hash suffix."""
    for o in objs:
        if o.get("kind") == kind and re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?", o["metadata"]["name"]):
            return o
    return None


def pod_template(obj):
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]
    return spec.get("template")


def all_containers(podspec):
    for field in ("initContainers", "containers"):
        for c in podspec.get(field) or []:
            yield field, c


def labels_match(selector, labels):
    ml = (selector or {}).get("matchLabels") or {}
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())


# ---- policy checks -------------------------------------------------------------

def policy_containers(objs):
    problems = []
    for o in objs:
        if o.get("kind") not in WORKLOADS:
            continue
        tpl = pod_template(o)
        ps = tpl["spec"]
        psc = ps.get("securityContext") or {}
        for field, c in all_containers(ps):
            where = "%s %s %s" % (ident(o), field, c.get("name"))
            p = du.image_problem(c.get("image"))
            if p:
                problems.append("%s: %s" % (where, p))
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        problems.append("%s: no %s.%s" % (where, part, r))
            sc = c.get("securityContext") or {}

            def eff(key):
                return sc[key] if key in sc else psc.get(key)
            if eff("runAsNonRoot") is not True:
                problems.append("%s: runAsNonRoot is not true" % where)
            if isinstance(eff("runAsUser"), int) and eff("runAsUser") == 0:
                problems.append("%s: runs as uid 0" % where)
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append("%s: readOnlyRootFilesystem is not true" % where)
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append("%s: allowPrivilegeEscalation is not false" % where)
            if sc.get("privileged"):
                problems.append("%s: privileged" % where)
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append("%s: capabilities do not drop ALL" % where)
            if (sc.get("capabilities") or {}).get("add"):
                problems.append("%s: adds capabilities" % where)
            seccomp = (eff("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                problems.append("%s: seccompProfile is %r, not RuntimeDefault" % (where, seccomp))
            if field == "containers" and o["kind"] not in ("Job", "CronJob"):
                ports = {p.get("name") for p in c.get("ports") or []} | \
                        {p.get("containerPort") for p in c.get("ports") or []}
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    pr = c.get(probe)
                    if not pr:
                        if probe != "startupProbe":
                            problems.append("%s: no %s" % (where, probe))
                        continue
                    for kind in ("httpGet", "tcpSocket", "grpc"):
                        if kind in pr and pr[kind].get("port") not in ports:
                            problems.append("%s: %s port %r is not a container port"
                                            % (where, probe, pr[kind].get("port")))
        if ps.get("hostNetwork") or ps.get("hostPID") or ps.get("hostIPC"):
            problems.append("%s: uses host namespaces" % ident(o))
        for v in ps.get("volumes") or []:
            if "hostPath" in v:
                problems.append("%s: hostPath volume %s" % (ident(o), v.get("name")))
        if ps.get("automountServiceAccountToken") is not False:
            problems.append("%s: mounts a service account token it does not need" % ident(o))
    return problems


def policy_selectors(objs):
    problems = []
    templates = [pod_template(o)["metadata"].get("labels") or {}
                 for o in objs if o.get("kind") in WORKLOADS]
    for o in objs:
        k = o.get("kind")
        spec = o.get("spec") or {}
        if k in ("Deployment", "StatefulSet", "DaemonSet"):
            if not labels_match(spec.get("selector"), pod_template(o)["metadata"].get("labels") or {}):
                problems.append("%s: selector does not match its pod template" % ident(o))
        if k == "StatefulSet":
            svc = find(objs, "Service", spec.get("serviceName"))
            if not svc or (svc["spec"].get("clusterIP") != "None"):
                problems.append("%s: serviceName %r is not a headless Service"
                                % (ident(o), spec.get("serviceName")))
        if k == "Service":
            sel = spec.get("selector") or {}
            if not any(all(t.get(a) == b for a, b in sel.items()) for t in templates) or not sel:
                problems.append("%s: selector %s matches no pod template" % (ident(o), sel))
        if k == "PodDisruptionBudget":
            if not any(labels_match(spec.get("selector"), t) for t in templates):
                problems.append("%s: selector matches no pod template" % ident(o))
        if k == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            if not find(objs, ref.get("kind"), ref.get("name")):
                problems.append("%s: scaleTargetRef %s/%s does not exist" % (ident(o), ref.get("kind"), ref.get("name")))
    return problems


def refs_of(objs):
    """[(where, kind, name, key-or-None)] for every ConfigMap/Secret reference."""
    out = []
    for o in objs:
        if o.get("kind") not in WORKLOADS:
            continue
        ps = pod_template(o)["spec"]
        for v in ps.get("volumes") or []:
            if "configMap" in v:
                for it in v["configMap"].get("items") or [None]:
                    out.append((ident(o), "ConfigMap", v["configMap"]["name"], it and it["key"]))
            if "secret" in v:
                for it in v["secret"].get("items") or [None]:
                    out.append((ident(o), "Secret", v["secret"]["secretName"], it and it["key"]))
        for _, c in all_containers(ps):
            for e in c.get("envFrom") or []:
                if "configMapRef" in e:
                    out.append((ident(o), "ConfigMap", e["configMapRef"]["name"], None))
                if "secretRef" in e:
                    out.append((ident(o), "Secret", e["secretRef"]["name"], None))
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if "configMapKeyRef" in vf:
                    out.append((ident(o), "ConfigMap", vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"]))
                if "secretKeyRef" in vf:
                    out.append((ident(o), "Secret", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"]))
    return out


def policy_refs(objs, external):
    problems = []
    for where, kind, name, key in refs_of(objs):
        target = find(objs, kind, name)
        if target is None:
            if kind == "Secret" and name in external:
                continue
            problems.append("%s refers to %s %s, which is not rendered" % (where, kind, name))
            continue
        if key is not None and key not in (target.get("data") or {}):
            problems.append("%s refers to key %s of %s %s, which it lacks" % (where, key, kind, name))
    return problems


def external_secret_keys(objs, external):
    return sorted({key for _, kind, name, key in refs_of(objs)
                   if kind == "Secret" and name in external and key})


def policy_env_names(objs):
    problems = []
    hap = du.haproxy_names()
    for o in objs:
        if o.get("kind") not in WORKLOADS:
            continue
        for _, c in all_containers(pod_template(o)["spec"]):
            allowed = hap if c.get("name") == "haproxy" else du.SERVICE_NAMES
            for e in c.get("env") or []:
                if e["name"].startswith("SNAPTEXT_") and e["name"] not in allowed:
                    problems.append("%s %s sets %s, which it does not read" % (ident(o), c["name"], e["name"]))
            for e in c.get("envFrom") or []:
                ref = e.get("configMapRef") or e.get("secretRef") or {}
                src = find(objs, "ConfigMap" if "configMapRef" in e else "Secret", ref.get("name"))
                for k in (src or {}).get("data") or {}:
                    if k.startswith("SNAPTEXT_") and k not in allowed:
                        problems.append("%s %s gets %s from %s, which it does not read"
                                        % (ident(o), c["name"], k, ref.get("name")))
    return problems


def policy_namespace(objs):
    problems = []
    ns = find(objs, "Namespace", NAMESPACE)
    if not ns:
        problems.append("no Namespace %s" % NAMESPACE)
    elif ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
        problems.append("Namespace %s does not enforce the restricted Pod Security Standard" % NAMESPACE)
    for o in objs:
        if o.get("kind") != "Namespace" and o["metadata"].get("namespace") != NAMESPACE:
            problems.append("%s is in namespace %r" % (ident(o), o["metadata"].get("namespace")))
    return problems


def policy_services(objs):
    problems = []
    config = generated(objs, "ConfigMap", "snaptext-config")
    for name, port in SERVICES.items():
        d = find(objs, "Deployment", name)
        if not d:
            problems.append("no Deployment %s" % name)
            continue
        if "replicas" in d["spec"]:
            problems.append("Deployment %s sets replicas; its autoscaler owns them" % name)
        tpl = pod_template(d)
        ann = tpl["metadata"].get("annotations") or {}
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(port) \
                or ann.get("prometheus.io/path") != "/metrics":
            problems.append("Deployment %s: Prometheus annotations should say scrape true, port %d, "
                            "path /metrics: %s" % (name, port, ann))
        c = next((c for c in tpl["spec"]["containers"] if c["name"] == name), None)
        if not c:
            problems.append("Deployment %s has no container %s" % (name, name))
            continue
        if c.get("command") != [name]:
            problems.append("%s: command should be [%r]" % (name, name))
        if not re.fullmatch(r"(.*/)?snaptext:[0-9][^:]*", c.get("image", "")):
            problems.append("%s: image %s is not snaptext:<version>" % (name, c.get("image")))
        if [p.get("containerPort") for p in c.get("ports") or []] != [port]:
            problems.append("%s: container port should be %d" % (name, port))
        if ((c.get("readinessProbe") or {}).get("httpGet") or {}).get("path") != "/readyz":
            problems.append("%s: readiness should be GET /readyz" % name)
        if ((c.get("livenessProbe") or {}).get("httpGet") or {}).get("path") != "/healthz":
            problems.append("%s: liveness should be GET /healthz" % name)
        if not any((e.get("configMapRef") or {}).get("name") == (config or {}).get("metadata", {}).get("name")
                   for e in c.get("envFrom") or []):
            problems.append("%s: does not read snaptext-config through envFrom" % name)
        env = {e["name"]: e for e in c.get("env") or []}
        store = (env.get("SNAPTEXT_STORE") or {}).get("value", "")
        if not store.startswith("mongodb://") or "replicaSet=" not in store:
            problems.append("%s: SNAPTEXT_STORE should target the MongoDB replica set: %r" % (name, store))
        names = [e["name"] for e in c.get("env") or []]
        for ref in re.findall(r"\$\((\w+)\)", store):
            if ref not in names or names.index(ref) > names.index("SNAPTEXT_STORE"):
                problems.append("%s: SNAPTEXT_STORE uses $(%s) before it is defined" % (name, ref))
        if name == "users":
            for v in ("SNAPTEXT_ADMIN_USERNAME", "SNAPTEXT_ADMIN_PASSWORD"):
                if "secretKeyRef" not in ((env.get(v) or {}).get("valueFrom") or {}):
                    problems.append("users: %s should come from the Secret" % v)
        hpa = [h for h in by_kind(objs, "HorizontalPodAutoscaler")
               if h["spec"]["scaleTargetRef"].get("name") == name
               and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"]
        if len(hpa) != 1 or hpa[0]["apiVersion"] != "autoscaling/v2":
            problems.append("%s: needs one autoscaling/v2 HorizontalPodAutoscaler" % name)
        pdb = [p for p in by_kind(objs, "PodDisruptionBudget")
               if labels_match(p["spec"].get("selector"), tpl["metadata"].get("labels") or {})]
        if len(pdb) != 1 or pdb[0]["apiVersion"] != "policy/v1":
            problems.append("%s: needs one policy/v1 PodDisruptionBudget" % name)
        svc = find(objs, "Service", name)
        head = find(objs, "Service", name + "-headless")
        if not svc or svc["spec"].get("type", "ClusterIP") != "ClusterIP" or svc["spec"].get("clusterIP") == "None":
            problems.append("%s: needs a ClusterIP Service %s" % (name, name))
        if not head or head["spec"].get("clusterIP") != "None":
            problems.append("%s: needs a headless Service %s-headless" % (name, name))
        for s in (svc, head):
            if s and [p.get("port") for p in s["spec"].get("ports") or []] != [port]:
                problems.append("Service %s should expose port %d" % (s["metadata"]["name"], port))
    return problems


def policy_stores(objs):
    problems = []
    redis = find(objs, "StatefulSet", "redis")
    mongo = find(objs, "StatefulSet", "mongo")
    if not redis or not mongo:
        return ["Redis and MongoDB StatefulSets are missing"]
    args = " ".join(map(str, pod_template(redis)["spec"]["containers"][0].get("args") or []))
    if "--appendonly yes" not in args or "--appendfsync everysec" not in args:
        problems.append("redis should run with --appendonly yes --appendfsync everysec: %r" % args)
    for s in (redis, mongo):
        vct = s["spec"].get("volumeClaimTemplates") or []
        mounts = {m["name"] for m in pod_template(s)["spec"]["containers"][0].get("volumeMounts") or []}
        if not vct or vct[0]["metadata"]["name"] not in mounts:
            problems.append("%s: its data is not on a volumeClaimTemplate volume" % ident(s))
    margs = pod_template(mongo)["spec"]["containers"][0].get("args") or []
    mcfg = (generated(objs, "ConfigMap", "mongo-config") or {}).get("data") or {}
    rs = margs[margs.index("--replSet") + 1] if "--replSet" in margs else None
    if rs != mcfg.get("MONGO_REPLICA_SET"):
        problems.append("mongod --replSet %r differs from mongo-config MONGO_REPLICA_SET %r"
                        % (rs, mcfg.get("MONGO_REPLICA_SET")))
    members = int(mcfg.get("MONGO_MEMBERS", "0"))
    if members != mongo["spec"].get("replicas", 1):
        problems.append("MONGO_MEMBERS=%s but the mongo StatefulSet has %s replicas"
                        % (members, mongo["spec"].get("replicas", 1)))
    seeds = mcfg.get("MONGO_SEEDS", "").split(",")
    want = ["mongo-%d.mongo:27017" % i for i in range(members)]
    if seeds != want:
        problems.append("MONGO_SEEDS %s should be %s" % (seeds, want))
    if not find(objs, "Job", "mongo-init"):
        problems.append("no mongo-init Job")
    return problems


def policy_haproxy(objs):
    problems = []
    d = find(objs, "Deployment", "haproxy")
    if not d:
        return ["no haproxy Deployment"]
    ps = pod_template(d)["spec"]
    c = ps["containers"][0]
    args = c.get("args") or []
    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-f"]
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts") or []}
    vols = {v["name"]: v for v in ps.get("volumes") or []}
    cm = None
    for vname, path in mounts.items():
        if "configMap" in vols.get(vname, {}):
            cm = find(objs, "ConfigMap", vols[vname]["configMap"]["name"])
            base = path.rstrip("/")
    if not cm or not re.match(r"haproxy-config(-|$)", cm["metadata"]["name"]):
        return ["haproxy does not mount the haproxy-config ConfigMap"]
    if files != [base + "/haproxy.cfg", base + "/backends.cfg"]:
        problems.append("haproxy should load %s/haproxy.cfg then %s/backends.cfg, loads %s" % (base, base, files))
    data = cm.get("data") or {}
    for key, src in (("haproxy.cfg", du.HAPROXY_CFG), ("backends.cfg", BACKENDS_K8S)):
        if data.get(key) != open(src, encoding="utf-8").read():
            problems.append("ConfigMap key %s differs from %s" % (key, os.path.relpath(src, du.SOURCE_DIR)))
    env = {e["name"]: e for e in c.get("env") or []}
    if (env.get("SNAPTEXT_PUBLIC_BIND") or {}).get("value") != ":8080":
        problems.append("haproxy SNAPTEXT_PUBLIC_BIND should be :8080")
    for k, v in snaptest.HAPROXY_MALLOC_ENV.items():
        if (env.get(k) or {}).get("value") != v:
            problems.append("haproxy %s should be %s (snaptest.HAPROXY_MALLOC_ENV)" % (k, v))
    if ((env.get("POD_NAMESPACE") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") != "metadata.namespace":
        problems.append("haproxy needs POD_NAMESPACE from the downward API (backends-k8s.cfg)")
    if not find(objs, "Service", "haproxy"):
        problems.append("no haproxy Service")
    return problems


def template_slots():
    """{backend: number of server-template slots} of backends-k8s.cfg."""
    slots, backend = {}, None
    for line in open(BACKENDS_K8S, encoding="utf-8"):
        m = re.match(r"^backend\s+(\S+)", line)
        if m:
            backend = m.group(1)
        m = re.match(r"^\s*server-template\s+\S+\s+(\d+)(?:-(\d+))?\s", line)
        if m and backend:
            lo, hi = int(m.group(1)), m.group(2)
            slots[backend] = (int(hi) - lo + 1) if hi else lo
    return slots


def policy_slots(objs):
    slots = template_slots()
    problems = []
    for name in SERVICES:
        h = find(objs, "HorizontalPodAutoscaler", name)
        if h and slots.get(name, 0) < h["spec"]["maxReplicas"]:
            problems.append("backends-k8s.cfg has %s slots for %s, its autoscaler goes to %d"
                            % (slots.get(name), name, h["spec"]["maxReplicas"]))
    return problems


def policy_dev(objs):
    problems = []
    for h in by_kind(objs, "HorizontalPodAutoscaler"):
        if h["spec"].get("minReplicas") != 1 or h["spec"].get("maxReplicas") != 1:
            problems.append("dev: %s should pin 1 replica" % ident(h))
    for kind, name in (("Deployment", "haproxy"), ("StatefulSet", "mongo"), ("StatefulSet", "redis")):
        o = find(objs, kind, name)
        if not o or o["spec"].get("replicas", 1) != 1:
            problems.append("dev: %s/%s should have 1 replica" % (kind, name))
    svc = find(objs, "Service", "haproxy")
    if svc and svc["spec"].get("type", "ClusterIP") not in ("ClusterIP", "NodePort"):
        problems.append("dev: the haproxy Service should be ClusterIP or NodePort")
    if not generated(objs, "Secret", "snaptext-secrets"):
        problems.append("dev: generates no snaptext-secrets")
    if find(objs, "StatefulSet", "redis-sentinel"):
        problems.append("dev: runs Sentinels")
    return problems


def policy_prod(objs, dev_objs):
    problems = []
    svc = find(objs, "Service", "haproxy")
    if not svc or svc["spec"].get("type") != "LoadBalancer":
        problems.append("prod: the haproxy Service should be a LoadBalancer")
    elif svc["spec"].get("externalTrafficPolicy") != "Local":
        problems.append("prod: the haproxy LoadBalancer should keep client addresses (externalTrafficPolicy Local)")
    if (find(objs, "Deployment", "haproxy") or {}).get("spec", {}).get("replicas", 1) < 2:
        problems.append("prod: HAProxy should run at least 2 replicas")
    if (find(objs, "StatefulSet", "mongo") or {}).get("spec", {}).get("replicas") != 3:
        problems.append("prod: MongoDB should be a 3-member replica set")
    if (find(objs, "StatefulSet", "redis") or {}).get("spec", {}).get("replicas") != 3:
        problems.append("prod: Redis should be a primary and 2 replicas")
    sent = find(objs, "StatefulSet", "redis-sentinel")
    if not sent or sent["spec"].get("replicas") != 3:
        problems.append("prod: 3 Sentinels expected")
    cfg = (generated(objs, "ConfigMap", "snaptext-config") or {}).get("data") or {}
    want = "%s;mymaster" % ",".join("redis-sentinel-%d.%s:26379" % (i, (sent or {}).get("spec", {}).get("serviceName"))
                                   for i in range(3))
    if cfg.get("SNAPTEXT_REDIS_SENTINELS") != want:
        problems.append("prod: SNAPTEXT_REDIS_SENTINELS should be %r, is %r" % (want, cfg.get("SNAPTEXT_REDIS_SENTINELS")))
    scripts = generated(objs, "ConfigMap", "redis-scripts")
    if not scripts or "mymaster" not in scripts["data"].get("sentinel-start.sh", "") \
            or "mymaster" not in scripts["data"].get("redis-start.sh", ""):
        problems.append("prod: the Sentinel scripts should monitor the master named mymaster")
    redis_c = pod_template(find(objs, "StatefulSet", "redis"))["spec"]["containers"][0]
    if redis_c.get("command") != ["sh", "/scripts/redis-start.sh"]:
        problems.append("prod: redis should start through redis-start.sh")
    if by_kind(objs, "Secret"):
        problems.append("prod: renders a Secret; secrets are created in the cluster, never committed")
    for name in SERVICES:
        h, hd = find(objs, "HorizontalPodAutoscaler", name), find(dev_objs, "HorizontalPodAutoscaler", name)
        if h and hd and h["spec"]["maxReplicas"] <= hd["spec"]["maxReplicas"]:
            problems.append("prod: %s should autoscale higher than dev" % name)
    return problems


# ---- access: passwords and NetworkPolicies ------------------------------------

SECRET = "snaptext-secrets"
# The programs that open the stores (pages opens none).
STORE_CLIENTS = ("users", "ingest", "fetch")
PAGES_PORT = 8084


def secret_token(key, name=SECRET):
    """A Secret key in container_env's values (a generated name's hash cut)."""
    return "<secret:%s/%s>" % (re.sub(r"-[a-z0-9]{10}$", "", name), key)


def container_env(objs, c):
    """{name: value} as the kubelet builds it: envFrom ConfigMaps first, then
    env in order, $(VAR) expanded from what is defined before it (otherwise
    left as is); a Secret key becomes secret_token(key, name)."""
    out = {}
    for e in c.get("envFrom") or []:
        if "configMapRef" in e:
            cm = find(objs, "ConfigMap", e["configMapRef"]["name"]) or {}
            out.update(cm.get("data") or {})
        if "secretRef" in e:
            sec = find(objs, "Secret", e["secretRef"]["name"]) or {}
            out.update({k: secret_token(k, e["secretRef"]["name"]) for k in sec.get("data") or {}})
    for e in c.get("env") or []:
        vf = e.get("valueFrom") or {}
        if "secretKeyRef" in vf:
            v = secret_token(vf["secretKeyRef"]["key"], vf["secretKeyRef"]["name"])
        elif "configMapKeyRef" in vf:
            cm = find(objs, "ConfigMap", vf["configMapKeyRef"]["name"]) or {}
            v = (cm.get("data") or {}).get(vf["configMapKeyRef"]["key"], "")
        elif "fieldRef" in vf:
            v = "<field:%s>" % vf["fieldRef"].get("fieldPath")
        else:
            v = re.sub(r"\$\((\w+)\)", lambda m: out.get(m.group(1), m.group(0)), str(e.get("value", "")))
        out[e["name"]] = v
    return out


def main_container(objs, kind, name):
    o = find(objs, kind, name)
    return pod_template(o)["spec"]["containers"][0] if o else None


def start_script(objs, c):
    """The shell text that starts a container: the `sh -c` script itself,
    or the file of a mounted ConfigMap that `sh /scripts/x.sh` runs."""
    cmd = c.get("command") or []
    if len(cmd) >= 3 and cmd[:2] == ["sh", "-c"]:
        return cmd[2]
    if len(cmd) == 2 and cmd[0] == "sh":
        cm = generated(objs, "ConfigMap", "redis-scripts") or {}
        return (cm.get("data") or {}).get(os.path.basename(cmd[1]), "")
    return ""


def has_line(script, line_re):
    return re.search(r"(?m)^\s*" + line_re + r"\s*$", script) is not None


PW = r"\$\{?REDIS_PASSWORD\}?"


def policy_redis_auth(objs, overlay):
    problems = []
    redis = main_container(objs, "StatefulSet", "redis")
    if not redis:
        return ["no redis StatefulSet"]
    renv = container_env(objs, redis)
    token = renv.get("REDIS_PASSWORD", "")
    if not token.startswith("<secret:"):
        problems.append("redis: REDIS_PASSWORD does not come from a Secret: %r" % token)
    if renv.get("REDISCLI_AUTH") != token:
        problems.append("redis: REDISCLI_AUTH (its probes' redis-cli) is not the password")
    script = start_script(objs, redis)
    if not has_line(script, "requirepass " + PW):
        problems.append("redis: its start does not set requirepass $REDIS_PASSWORD")
    if not re.search(r'exec "\$@" - <<', script):
        problems.append("redis: the password should reach redis-server on stdin (exec \"$@\" - <<EOF)")
    if overlay == "prod" and not has_line(script, "masterauth " + PW):
        problems.append("prod redis: replicas need masterauth $REDIS_PASSWORD")
    sentinel = main_container(objs, "StatefulSet", "redis-sentinel")
    senv = container_env(objs, sentinel) if sentinel else {}
    if overlay == "prod":
        if not sentinel:
            problems.append("prod: no redis-sentinel StatefulSet")
        else:
            if senv.get("REDIS_PASSWORD") != token:
                problems.append("redis-sentinel: REDIS_PASSWORD is not the Redis password from the Secret")
            if senv.get("REDISCLI_AUTH") != token:
                problems.append("redis-sentinel: REDISCLI_AUTH (probes, peers) is not the password")
            sscript = start_script(objs, sentinel)
            if not has_line(sscript, "sentinel auth-pass mymaster " + PW):
                problems.append("redis-sentinel: no sentinel auth-pass mymaster $REDIS_PASSWORD")
            if not has_line(sscript, "requirepass " + PW):
                problems.append("redis-sentinel: the Sentinels themselves have no requirepass")
    for o in objs:
        if o.get("kind") not in WORKLOADS:
            continue
        for _, c in all_containers(pod_template(o)["spec"]):
            env = container_env(objs, c)
            name = c.get("name")
            if "SNAPTEXT_REDIS_URL" not in env and name not in STORE_CLIENTS:
                continue
            url = env.get("SNAPTEXT_REDIS_URL", "")
            m = re.fullmatch(r"redis://(?:[^:@/]*):(.+)@([^/@]+)(/\d+)?", url)
            if not m or m.group(1) != token:
                problems.append("%s %s: SNAPTEXT_REDIS_URL %r does not carry the Redis password %s"
                                % (ident(o), name, url, token))
            if overlay == "prod" and name in STORE_CLIENTS and \
                    env.get("SNAPTEXT_REDIS_SENTINEL_PASSWORD") != senv.get("REDIS_PASSWORD", "?"):
                problems.append("%s: SNAPTEXT_REDIS_SENTINEL_PASSWORD %r is not the Sentinels' password"
                                % (name, env.get("SNAPTEXT_REDIS_SENTINEL_PASSWORD")))
    cfg = (generated(objs, "ConfigMap", "snaptext-config") or {}).get("data") or {}
    if "SNAPTEXT_REDIS_URL" in cfg:
        problems.append("snaptext-config holds SNAPTEXT_REDIS_URL: the URL carries a password, "
                        "build it in each Deployment from the Secret")
    return problems


def policy_mongo_auth(objs):
    problems = []
    mongod = main_container(objs, "StatefulSet", "mongo")
    if not mongod:
        return ["no mongo StatefulSet"]
    args = [str(a) for a in mongod.get("args") or []]
    if "--keyFile" not in args and "--auth" not in args:
        problems.append("mongod runs without --keyFile/--auth: no access control")
    if "--noauth" in args:
        problems.append("mongod runs with --noauth")
    menv = container_env(objs, mongod)
    for v, key in (("MONGO_INITDB_ROOT_USERNAME", "mongo-root-username"),
                   ("MONGO_INITDB_ROOT_PASSWORD", "mongo-root-password")):
        if menv.get(v) != secret_token(key):
            problems.append("mongod: %s should come from %s key %s" % (v, SECRET, key))
    job = main_container(objs, "Job", "mongo-init")
    jenv = container_env(objs, job) if job else {}
    for v, key in (("MONGO_APP_USERNAME", "mongo-app-username"), ("MONGO_APP_PASSWORD", "mongo-app-password")):
        if jenv.get(v) != secret_token(key):
            problems.append("mongo-init: %s should come from %s key %s" % (v, SECRET, key))
    for name in STORE_CLIENTS:
        c = main_container(objs, "Deployment", name)
        store = container_env(objs, c).get("SNAPTEXT_STORE", "") if c else ""
        m = re.fullmatch(r"mongodb://(<[^>]+>|[^:@/]+):(<[^>]+>|[^:@/]+)@([^/]+)/(\w+)\?(.*)", store)
        if not m or m.group(1) != secret_token("mongo-app-username") \
                or m.group(2) != secret_token("mongo-app-password"):
            problems.append("%s: SNAPTEXT_STORE %r does not carry the app user's credentials" % (name, store))
        elif "authSource=admin" not in m.group(5).split("&"):
            problems.append("%s: SNAPTEXT_STORE should say authSource=admin (the Job creates the user there)" % name)
    return problems


def selector_matches(sel, labels):
    """A LabelSelector against labels ({} selects everything)."""
    sel = sel or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for ex in sel.get("matchExpressions") or []:
        k, op, vals = ex["key"], ex["operator"], ex.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def network_pods(objs):
    """[(name, labels, {port number: port name})] of every workload's pods."""
    out = []
    for o in objs:
        if o.get("kind") not in WORKLOADS:
            continue
        tpl = pod_template(o)
        ports = {}
        for _, c in all_containers(tpl["spec"]):
            for p in c.get("ports") or []:
                ports[p["containerPort"]] = p.get("name")
        out.append((o["metadata"]["name"], tpl["metadata"].get("labels") or {}, ports))
    return out


# Sources that are not snaptext pods: another pod of the namespace, a pod of
# another namespace, a client outside the cluster.
INTRUDER = ("intruder", {"app.kubernetes.io/name": "intruder"}, NAMESPACE)
OTHER_NS = ("pod-in-other-namespace", {"app.kubernetes.io/name": "users"}, "other")
OUTSIDE = ("outside", None, None)


def ingress_allowed(objs, src, dst_labels, dst_ports, port):
    """Would the rendered NetworkPolicies let src (name, labels, namespace;
    labels None: outside the cluster) reach port on a pod of this namespace?"""
    _, src_labels, src_ns = src
    ns_labels = {NAMESPACE: (find(objs, "Namespace", NAMESPACE) or {}).get("metadata", {}).get("labels") or {}}
    ns_labels.setdefault("other", {"kubernetes.io/metadata.name": "other"})
    ns_labels[NAMESPACE] = dict(ns_labels[NAMESPACE], **{"kubernetes.io/metadata.name": NAMESPACE})
    isolating = [np for np in by_kind(objs, "NetworkPolicy")
                 if "Ingress" in (np["spec"].get("policyTypes") or ["Ingress"])
                 and selector_matches(np["spec"].get("podSelector"), dst_labels)]
    if not isolating:
        return True
    for np in isolating:
        for rule in np["spec"].get("ingress") or []:
            rports = rule.get("ports") or []
            if rports and not any(
                    p.get("protocol", "TCP") == "TCP" and
                    (p.get("port") is None or p.get("port") == port or p.get("port") == dst_ports.get(port)
                     or (isinstance(p.get("port"), int) and p.get("endPort") and p["port"] <= port <= p["endPort"]))
                    for p in rports):
                continue
            peers = rule.get("from") or []
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    return True  # taken as open to everything: none is expected
                if src_labels is None:
                    continue
                if "namespaceSelector" in peer:
                    if not selector_matches(peer["namespaceSelector"], ns_labels.get(src_ns, {})):
                        continue
                elif src_ns != NAMESPACE:
                    continue
                if selector_matches(peer.get("podSelector"), src_labels):
                    return True
    return False


def expected_allowed(src_name, dst_name, port):
    public = {("haproxy", 8080)}
    if (dst_name, port) in public:
        return True
    table = {("users", 8081): {"haproxy"}, ("ingest", 8082): {"haproxy"},
             ("fetch", 8083): {"haproxy"}, ("pages", PAGES_PORT): {"haproxy"},
             ("redis", 6379): set(STORE_CLIENTS) | {"redis", "redis-sentinel"},
             ("redis-sentinel", 26379): set(STORE_CLIENTS) | {"redis", "redis-sentinel"},
             ("mongo", 27017): set(STORE_CLIENTS) | {"mongo", "mongo-init"}}
    return src_name in table.get((dst_name, port), set())


def policy_network(objs):
    """The whole matrix: every source (each workload's pods, an intruder pod,
    a pod of another namespace, a client outside) against every declared port
    of every workload, evaluated from the rendered policies."""
    problems = []
    pods = network_pods(objs)
    if not by_kind(objs, "NetworkPolicy"):
        problems.append("no NetworkPolicy is rendered")
    for np in by_kind(objs, "NetworkPolicy"):
        sel = np["spec"].get("podSelector") or {}
        if sel and not any(selector_matches(sel, labels) for _, labels, _ in pods):
            problems.append("%s selects no pod" % ident(np))
    sources = [(n, labels, NAMESPACE) for n, labels, _ in pods] + [INTRUDER, OTHER_NS, OUTSIDE]
    checked = 0
    for dst_name, dst_labels, dst_ports in pods:
        for port in sorted(dst_ports):
            for src in sources:
                got = ingress_allowed(objs, src, dst_labels, dst_ports, port)
                want = expected_allowed(src[0], dst_name, port)
                checked += 1
                if got != want:
                    problems.append("%s -> %s:%d is %s, should be %s" % (
                        src[0], dst_name, port, "allowed" if got else "refused",
                        "allowed" if want else "refused"))
    if checked == 0:
        problems.append("no pod ports to check")
    return problems


def check_access_rejects(prod):
    """The access checks fail on manifests without the fixes."""
    def without(pred):
        return [o for o in copy.deepcopy(prod) if not pred(o)]
    said = []
    cases = []
    no_np = without(lambda o: o.get("kind") == "NetworkPolicy")
    cases.append(("no NetworkPolicies", policy_network(no_np), "intruder -> redis:6379 is allowed"))
    wrong = copy.deepcopy(prod)
    for o in wrong:
        if o.get("kind") == "NetworkPolicy" and o["metadata"]["name"] == "redis-from-services":
            o["spec"]["podSelector"] = {"matchLabels": {"app.kubernetes.io/name": "redis-server"}}
        if o.get("kind") == "NetworkPolicy" and o["metadata"]["name"] == "default-deny-ingress":
            o["spec"]["podSelector"] = {"matchLabels": {"app.kubernetes.io/name": "haproxy"}}
    cases.append(("redis policy selecting a label no pod has", policy_network(wrong),
                  "intruder -> redis:6379 is allowed"))
    nopass = copy.deepcopy(prod)
    for o in nopass:
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("redis-scripts"):
            o["data"]["redis-start.sh"] = o["data"]["redis-start.sh"].replace("requirepass $REDIS_PASSWORD", "")
            o["data"]["sentinel-start.sh"] = o["data"]["sentinel-start.sh"].replace(
                "sentinel auth-pass mymaster $REDIS_PASSWORD", "")
        if o.get("kind") == "Deployment" and o["metadata"]["name"] == "ingest":
            for e in pod_template(o)["spec"]["containers"][0]["env"]:
                if e["name"] == "SNAPTEXT_REDIS_URL":
                    e["value"] = "redis://redis:6379/0"
    found = "\n".join(policy_redis_auth(nopass, "prod"))
    for want in ("requirepass $REDIS_PASSWORD", "auth-pass", "ingest: SNAPTEXT_REDIS_URL"):
        cases.append(("Redis without " + want, [found] if found else [], want))
    noauth = copy.deepcopy(prod)
    for o in noauth:
        if o.get("kind") == "StatefulSet" and o["metadata"]["name"] == "mongo":
            c = pod_template(o)["spec"]["containers"][0]
            c["args"] = [a for a in c["args"] if a not in ("--keyFile", "/keyfile/keyfile")]
        if o.get("kind") == "Deployment" and o["metadata"]["name"] == "fetch":
            for e in pod_template(o)["spec"]["containers"][0]["env"]:
                if e["name"] == "SNAPTEXT_STORE":
                    e["value"] = "mongodb://mongo-0.mongo:27017/snaptext?replicaSet=rs0"
    found = "\n".join(policy_mongo_auth(noauth))
    for want in ("without --keyFile", "fetch: SNAPTEXT_STORE"):
        cases.append(("MongoDB " + want, [found] if found else [], want))
    for title, problems, want in cases:
        if not any(want in p for p in problems):
            said.append("%s: expected a problem saying %r, got %s" % (title, want, problems))
    assert not said, "\n    " + "\n    ".join(said)
    assert not policy_network(prod) and not policy_redis_auth(prod, "prod") and not policy_mongo_auth(prod), \
        "the unchanged prod render should pass"
    return len(cases)


def policy_docs(objs, external):
    doc = du.path("docs", "DEPLOY.md")
    if not os.path.exists(doc):
        return ["docs/DEPLOY.md is missing"]
    text = open(doc, encoding="utf-8").read()
    return ["docs/DEPLOY.md does not mention the Secret key %s prod needs" % k
            for k in external_secret_keys(objs, external) if k not in text]


def all_policies(name, objs, dev_objs):
    ext = EXTERNAL_SECRETS.get(name, set())
    checks = [
        ("containers: resources, non-root, read-only root, no escalation, caps dropped, "
         "seccomp, pinned images, probes", policy_containers(objs)),
        ("selectors, headless Services, autoscaler targets", policy_selectors(objs)),
        ("ConfigMap and Secret references resolve", policy_refs(objs, ext)),
        ("SNAPTEXT_* names are the programs' own", policy_env_names(objs)),
        ("namespace %s with the restricted Pod Security Standard" % NAMESPACE, policy_namespace(objs)),
        ("users/ingest/fetch: probes, HPA, PDB, Prometheus, Services, store", policy_services(objs)),
        ("Redis AOF, MongoDB replica set, volumes", policy_stores(objs)),
        ("HAProxy config from deploy/haproxy/", policy_haproxy(objs)),
        ("HAProxy server-template slots cover the autoscalers", policy_slots(objs)),
        ("Redis requires a password from the Secret; every Redis URL carries it"
         + ("; Sentinels: auth-pass, requirepass, the services' sentinel password" if name == "prod" else ""),
         policy_redis_auth(objs, name)),
        ("MongoDB access control: keyFile, root and app users from the Secret, "
         "credentials in every SNAPTEXT_STORE", policy_mongo_auth(objs)),
        ("NetworkPolicies: default deny; public -> haproxy -> services -> Redis/MongoDB "
         "(every source x pod port evaluated)", policy_network(objs)),
    ]
    if name == "dev":
        checks.append(("one of each", policy_dev(objs)))
    if name == "prod":
        checks.append(("LoadBalancer, 3-member MongoDB, Redis + Sentinels, higher HPA max",
                       policy_prod(objs, dev_objs)))
        checks.append(("docs/DEPLOY.md lists the Secret keys", policy_docs(objs, ext)))
    return checks


# ---- the validator -----------------------------------------------------------

def node_tool():
    node = du.find_tool("node")
    if not node:
        raise AssertionError("node is not installed (Debian package nodejs)")
    if not os.path.isdir(os.path.join(du.DEPLOY_TEST_DIR, "node_modules", "kubernetes-models")):
        raise AssertionError("tests/deploy/node_modules is missing: run "
                             "`npm ci --prefix tests/deploy` (tests/run.sh does)")
    return node


def validate(items):
    """{id: [errors]} for [(id, object)], from one k8s_schema.js run."""
    node = node_tool()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{"id": i, "object": o} for i, o in items], f)
        name = f.name
    try:
        out = subprocess.run([node, os.path.join(du.DEPLOY_TEST_DIR, "k8s_schema.js"), name],
                             capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(name)
    assert out.returncode == 0, "k8s_schema.js failed:\n%s" % out.stderr
    return {r["id"]: r["errors"] for r in json.loads(out.stdout)["results"]}


def schema_view(obj):
    """The object as the API server decodes it. kustomize cuts base64 Secret
    data of 70 characters or more into lines; the server's decoder skips the
    newlines, the schema's "byte" format does not."""
    if obj.get("kind") != "Secret" or not obj.get("data"):
        return obj
    out = copy.deepcopy(obj)
    out["data"] = {k: v.replace("\n", "") for k, v in out["data"].items()}
    return out


def negative_samples():
    """(id, object, expected substring of an error; None = must be valid)."""
    good = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "probe"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "three"
    missing = copy.deepcopy(good)
    del missing["spec"]["template"]["spec"]["containers"][0]["name"]
    typo = copy.deepcopy(good)
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    bad_kind = copy.deepcopy(good)
    bad_kind["kind"] = "Deploymnt"
    bad_svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"ports": [{"port": "eighty"}]}}
    return [
        ("self-test/valid", good, None),
        ("self-test/wrong-type", wrong_type, "schema:"),
        ("self-test/missing-required", missing, "schema:"),
        ("self-test/unknown-field", typo, "readinesProbe"),
        ("self-test/unknown-kind", bad_kind, "no schema"),
        ("self-test/service-port-type", bad_svc, "schema:"),
    ]


def check_validator_rejects(results):
    problems = []
    for sid, _, expect in negative_samples():
        errs = results.get(sid, ["(no result)"])
        if expect is None and errs:
            problems.append("%s should be valid: %s" % (sid, errs))
        if expect is not None and not any(expect in e for e in errs):
            problems.append("%s should be rejected with %r, got %s" % (sid, expect, errs))
    return problems


def check_policy_rejects():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": "x"},
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "c"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx:latest",
                                                          "securityContext": {"allowPrivilegeEscalation": True}}],
                                          "initContainers": [{"name": "i", "image": "busybox"}]}}}}
    found = "\n".join(policy_containers([bad]) + policy_selectors([bad]) + policy_namespace([bad]))
    want = ["uses the tag latest", "has no tag", "no requests.cpu", "no limits.memory",
            "runAsNonRoot is not true", "readOnlyRootFilesystem is not true",
            "allowPrivilegeEscalation is not false", "do not drop ALL", "not RuntimeDefault",
            "no readinessProbe", "no livenessProbe", "service account token",
            "selector does not match", "no Namespace", "is in namespace 'x'"]
    missing = [w for w in want if w not in found]
    assert not missing, "the policy checks missed: %s\n  they said:\n%s" % (missing, found)


# ---- the renderer ----------------------------------------------------------------

def check_renderer_cases():
    sm = kustomize.strategic_merge
    base = {"spec": {"containers": [{"name": "a", "image": "a:1", "args": ["x"]},
                                    {"name": "b", "image": "b:1"}],
                     "replicas": 2, "paused": True}}
    out = sm(base, {"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}],
                             "paused": None}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "c", "a"], out
    assert out["spec"]["containers"][0]["image"] == "b:2" and "paused" not in out["spec"]
    assert base["spec"]["containers"][1]["image"] == "b:1", "the base was modified"
    out = sm({"args": ["1", "2"]}, {"args": ["3"]})
    assert out == {"args": ["3"]}, out
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 5},
           {"op": "add", "path": "/spec/containers/-", "value": {"name": "d"}},
           {"op": "remove", "path": "/spec/paused"},
           {"op": "add", "path": "/metadata~1x", "value": 1}]
    out = kustomize.json6902(base, ops)
    assert out["spec"]["replicas"] == 5 and out["spec"]["containers"][-1] == {"name": "d"}
    assert "paused" not in out["spec"] and out["metadata/x"] == 1
    try:
        kustomize.json6902(base, [{"op": "replace", "path": "/spec/nothing", "value": 1}])
        raise AssertionError("replace of a missing field was accepted")
    except kustomize.KustomizeError:
        pass
    # Observed with kubectl 1.32 (kustomize 5.5.0): configMapGenerator x, literal A=1.
    cm = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"A": "1"}}
    assert kustomize.name_hash(cm) == "89g4tffbfk", kustomize.name_hash(cm)
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "kustomization.yaml"), "w").write("namePrefix: x-\n")
        try:
            kustomize.render(d)
            raise AssertionError("an unsupported field was accepted")
        except kustomize.KustomizeError as e:
            assert "namePrefix" in str(e), e
        open(os.path.join(d, "kustomization.yaml"), "w").write("resources: [../../etc/passwd]\n")
        try:
            kustomize.render(d)
            raise AssertionError("a file outside the root was accepted")
        except kustomize.KustomizeError:
            pass


def kubectl_render(directory):
    kubectl = du.find_tool("kubectl")
    if not kubectl:
        raise Skip("kubectl is not installed; the renderer is checked by its own cases only")
    out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True, timeout=120)
    if out.returncode != 0 and ("unknown command" in out.stderr or "not found" in out.stderr):
        raise Skip("this kubectl has no kustomize")
    assert out.returncode == 0, "kubectl kustomize %s failed:\n%s" % (directory, out.stderr)
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def compare_renders(mine, theirs):
    def key(o):
        return (o.get("kind"), o["metadata"].get("namespace"), o["metadata"]["name"])
    a = {key(o): o for o in mine}
    b = {key(o): o for o in theirs}
    problems = ["only kustomize.py renders %s" % (k,) for k in sorted(set(a) - set(b), key=str)]
    problems += ["only kubectl renders %s" % (k,) for k in sorted(set(b) - set(a), key=str)]
    for k in sorted(set(a) & set(b), key=str):
        if a[k] != b[k]:
            problems.append("%s differs:\n%s" % (k, "\n".join(_diff(a[k], b[k]))))
    return problems


def _diff(x, y, path=""):
    if isinstance(x, dict) and isinstance(y, dict):
        out = []
        for k in sorted(set(x) | set(y)):
            if x.get(k) != y.get(k):
                out += _diff(x.get(k), y.get(k), "%s/%s" % (path, k))
        return out
    return ["      %s: kustomize.py %r, kubectl %r" % (path, x, y)]


# ---- files beside the manifests ------------------------------------------------------

def check_copies():
    problems = []
    for copy_path, src in COPIES.items():
        if not os.path.exists(copy_path):
            problems.append("%s is missing" % os.path.relpath(copy_path, du.SOURCE_DIR))
        elif open(copy_path, "rb").read() != open(src, "rb").read():
            problems.append("%s differs from %s: copy it again (cp %s %s)" % (
                os.path.relpath(copy_path, du.SOURCE_DIR), os.path.relpath(src, du.SOURCE_DIR),
                os.path.relpath(src, du.SOURCE_DIR), os.path.relpath(copy_path, du.SOURCE_DIR)))
    return problems


def check_haproxy_k8s():
    tool = du.find_tool("haproxy")
    if not tool:
        du.missing_tool("haproxy", "Debian package haproxy")
    env = dict(os.environ, POD_NAMESPACE=NAMESPACE)
    out = subprocess.run([tool, "-c", "-f", du.HAPROXY_CFG, "-f", BACKENDS_K8S],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0, "haproxy -c failed:\n%s%s" % (out.stdout, out.stderr)
    text = open(BACKENDS_K8S, encoding="utf-8").read()
    assert "parse-resolv-conf" in text, "backends-k8s.cfg should resolve through /etc/resolv.conf"
    for name, port in SERVICES.items():
        want = "%s-headless.${POD_NAMESPACE-%s}.svc.${CLUSTER_DOMAIN-cluster.local}:%d" % (name, NAMESPACE, port)
        assert want in text, "backend %s should template %s" % (name, want)


def check_scripts():
    problems = []
    node = node_tool()
    js = du.path("k8s", "base", "mongo", "init-replicaset.js")
    out = subprocess.run([node, "--check", js], capture_output=True, text=True)
    if out.returncode != 0:
        problems.append("init-replicaset.js does not parse:\n%s" % out.stderr)
    for sh in ("redis-start.sh", "sentinel-start.sh"):
        p = du.path("k8s", "overlays", "prod", "redis", sh)
        out = subprocess.run(["sh", "-n", p], capture_output=True, text=True)
        if out.returncode != 0:
            problems.append("%s does not parse:\n%s" % (sh, out.stderr))
    out = subprocess.run([node, os.path.join(du.DEPLOY_TEST_DIR, "mongo_init_sim.js"), js],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        problems.append("mongo_init_sim.js failed:\n%s" % out.stderr)
    else:
        for s in json.loads(out.stdout)["scenarios"]:
            if not s["ok"]:
                problems.append("mongo-init: %s: %s" % (s["name"], s["detail"]))
    return problems


def main():
    c = Checks()
    c.expect("k8s/base/haproxy/ copies equal deploy/haproxy/haproxy.cfg and backends-k8s.cfg",
             check_copies())
    c.run("haproxy -c accepts haproxy.cfg + backends-k8s.cfg; headless names templated",
          check_haproxy_k8s)
    c.run("renderer (kustomize.py): strategic merge, JSON 6902, name hash, refusals",
          check_renderer_cases)
    c.run("policy checks reject a deliberately broken Deployment", check_policy_rejects)

    renders = {}
    for name in OVERLAYS:
        renders[name] = c.run("render k8s/overlays/%s" % name, kustomize.render, overlay_dir(name))
    for name in OVERLAYS:
        if renders[name] is not None:
            c.run("kustomize.py renders k8s/overlays/%s exactly as kubectl kustomize" % name,
                  lambda n=name: _raise(compare_renders(renders[n], kubectl_render(overlay_dir(n)))))

    items = [(sid, obj) for sid, obj, _ in negative_samples()]
    for name in OVERLAYS:
        for o in renders[name] or []:
            items.append(("%s/%s" % (name, ident(o)), schema_view(o)))
    results = c.run("schema validator runs (node, kubernetes-models, typescript)", validate, items)
    if results is not None:
        c.expect("schema validator rejects broken objects and accepts a valid one",
                 check_validator_rejects(results))
        for name in OVERLAYS:
            errs = ["%s: %s" % (i, "; ".join(e)) for i, e in results.items()
                    if i.startswith(name + "/") and e]
            n = sum(1 for i in results if i.startswith(name + "/"))
            c.expect("%s: all %d objects valid against the Kubernetes schemas, no unknown fields"
                     % (name, n), errs)
    for name in OVERLAYS:
        if renders[name] is None:
            continue
        for title, problems in all_policies(name, renders[name], renders.get("dev") or []):
            c.expect("%s: %s" % (name, title), problems)
    if renders.get("prod") is not None:
        c.run("access checks reject manifests without NetworkPolicies, with a wrong selector, "
              "without Redis/Sentinel passwords or MongoDB auth", check_access_rejects, renders["prod"])
    c.run("mongo-init script and Redis scripts parse; mongo-init is idempotent (simulated set)",
          lambda: _raise(check_scripts()))
    return c.finish()


def _raise(problems):
    if problems:
        raise AssertionError("\n    " + "\n    ".join(problems))


if __name__ == "__main__":
    du.main_guard(main)
