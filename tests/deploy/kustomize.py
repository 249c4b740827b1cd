"""kustomize.py: renders the kustomizations under k8s/ without kustomize.

Debian has neither kubectl nor kustomize, and the deploy tests must run
offline, so this module implements the part of kustomize that k8s/ uses,
the way kustomize does it, and nothing more:

  resources           YAML files (several documents each) and directories
                      holding a kustomization.yaml, recursively
  namespace           metadata.namespace of every namespaced object
  configMapGenerator  literals (KEY=VALUE) and files ([key=]path),
  secretGenerator     behavior create | merge | replace, and kustomize's
                      name hash suffix (same algorithm, so the names match)
  patches             path or inline patch, with or without a target
                      (kind, optional name); a list is a JSON 6902 patch
                      (add, replace, remove), a mapping a strategic merge
                      patch (below)
  replicas            name + count
  images              name + newName / newTag / digest
  name references     pod specs that name a generated ConfigMap or Secret
                      are updated to its hashed name

Strategic merge, as far as implemented: mappings merge recursively, a null
value deletes the key, lists of mappings merge by the Kubernetes merge key
for the fields in MERGE_KEYS, every other list is replaced.

Anything else in a kustomization (components, labels, namePrefix,
replacements, helmCharts, remote resources, generator options, ...) is an
error naming the field, so that a kustomization using more than this never
renders silently wrong. check_k8s.py compares this renderer's output with
`kubectl kustomize` wherever kubectl is installed.

    python3 kustomize.py k8s/overlays/prod      # prints the YAML stream
"""

import base64
import copy
import hashlib
import json
import os
import sys

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator",
                  "secretGenerator", "patches", "replicas", "images"}
GENERATOR_KEYS = {"name", "behavior", "literals", "files", "type"}

# Kinds that are not namespaced, among those k8s/ could plausibly use.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "PriorityClass",
                  "IngressClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration"}

# Merge keys of the Kubernetes lists that strategic merge merges item by item
# (patchMergeKey in the API types). "ports" depends on the parent: see
# _merge_key().
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
    "hostAliases": "ip",
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Where `replicas:` may set spec.replicas.
REPLICA_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}

# Marks an object produced by a generator until the final pass gives it its
# hashed name; never present in the output.
_GEN = "__kustomize_generated__"


class KustomizeError(Exception):
    pass


# ---- loading ---------------------------------------------------------------

def _load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _kustomization_file(directory):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    raise KustomizeError("%s: no kustomization.yaml" % directory)


def _inside(root, path):
    """kustomize's default load restrictor: no file outside the root."""
    root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != root and not real.startswith(root + os.sep):
        raise KustomizeError("%s is outside the kustomization root %s "
                             "(kustomize's load restrictor refuses it)" % (path, root))
    return real


def _key(obj):
    md = obj.get("metadata") or {}
    return (obj.get("kind"), md.get("name"))


# ---- generators ------------------------------------------------------------

def _generator_data(directory, gen, where):
    unknown = set(gen) - GENERATOR_KEYS
    if unknown:
        raise KustomizeError("%s: generator field(s) not supported: %s" % (where, sorted(unknown)))
    data = {}
    for lit in gen.get("literals") or []:
        if "=" not in lit:
            raise KustomizeError("%s: literal %r has no '='" % (where, lit))
        k, v = lit.split("=", 1)
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        data[k] = v
    for spec in gen.get("files") or []:
        if "=" in spec:
            k, rel = spec.split("=", 1)
        else:
            k, rel = os.path.basename(spec), spec
        path = _inside(directory, os.path.join(directory, rel))
        with open(path, "rb") as f:
            raw = f.read()
        try:
            data[k] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise KustomizeError("%s: %s is not UTF-8 (binaryData is not supported)" % (where, rel))
    return data


def _base64_lines(raw):
    """Base64 as kustomize writes Secret data: an encoding of 70 characters
    or more is cut into lines of 70, each ending in a newline (the API
    server's decoder skips newlines); a shorter one is left as it is."""
    enc = base64.b64encode(raw).decode("ascii")
    if len(enc) // 70 + 1 == 1:
        return enc
    return "".join(enc[i:i + 70] + "\n" for i in range(0, len(enc), 70))


def _generated_object(kind, gen, data, namespace):
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]}}
    if namespace:
        obj["metadata"]["namespace"] = namespace
    if kind == "Secret":
        obj["type"] = gen.get("type", "Opaque")
        obj["data"] = {k: _base64_lines(v.encode("utf-8")) for k, v in data.items()}
    else:
        obj["data"] = dict(data)
    obj[_GEN] = True
    return obj


def _apply_generators(directory, k, objs):
    for field, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for gen in k.get(field) or []:
            where = "%s: %s %s" % (directory, field, gen.get("name"))
            data = _generator_data(directory, gen, where)
            behavior = gen.get("behavior", "create")
            existing = [o for o in objs if _key(o) == (kind, gen["name"])]
            if behavior == "create":
                if existing:
                    raise KustomizeError("%s: already exists (use behavior: merge)" % where)
                objs.append(_generated_object(kind, gen, data, k.get("namespace")))
            elif behavior in ("merge", "replace"):
                if len(existing) != 1:
                    raise KustomizeError("%s: behavior %s needs exactly one existing %s"
                                         % (where, behavior, kind))
                target = existing[0]
                new = _generated_object(kind, gen, data, None)["data"]
                if behavior == "merge":
                    target.setdefault("data", {}).update(new)
                else:
                    target["data"] = new
            else:
                raise KustomizeError("%s: unknown behavior %r" % (where, behavior))


# ---- patches ---------------------------------------------------------------

def _merge_key(field, items):
    if field == "ports":
        # Container ports merge on containerPort, Service ports on port.
        if all(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        return "port"
    return MERGE_KEYS.get(field)


def strategic_merge(base, patch, field=None):
    """Returns base with patch merged in (neither argument is modified)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        mk = _merge_key(field, base + patch)
        if not mk or not all(isinstance(i, dict) and mk in i for i in base + patch):
            return copy.deepcopy(patch)
        # kustomize's order: the patch's items first, in the patch's order
        # (merged with the item of the same key), then the items only the
        # base has, in the base's order.
        by_key = {i[mk]: i for i in base}
        patched = {i[mk] for i in patch}
        out = [strategic_merge(by_key[i[mk]], i, None) if i[mk] in by_key else copy.deepcopy(i)
               for i in patch]
        out.extend(copy.deepcopy(i) for i in base if i[mk] not in patched)
        return out
    return copy.deepcopy(patch)


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError("JSON pointer %r must start with '/'" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json6902(obj, ops):
    """Applies a JSON 6902 patch (add, replace, remove) to a copy of obj."""
    out = copy.deepcopy(obj)
    for op in ops:
        kind = op.get("op")
        parts = _pointer(op.get("path", ""))
        if not parts:
            raise KustomizeError("JSON 6902: the whole document cannot be patched")
        parent = out
        for p in parts[:-1]:
            if isinstance(parent, list):
                parent = parent[int(p)]
            elif isinstance(parent, dict) and p in parent:
                parent = parent[p]
            else:
                raise KustomizeError("JSON 6902 %s %s: %s does not exist" % (kind, op["path"], p))
        last = parts[-1]
        if kind in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-" and kind == "add":
                    parent.append(value)
                elif kind == "add":
                    parent.insert(int(last), value)
                else:
                    parent[int(last)] = value
            else:
                if kind == "replace" and last not in parent:
                    raise KustomizeError("JSON 6902 replace %s: no such field" % op["path"])
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            elif last in parent:
                del parent[last]
            else:
                raise KustomizeError("JSON 6902 remove %s: no such field" % op["path"])
        else:
            raise KustomizeError("JSON 6902 op %r is not supported" % kind)
    return out


def _apply_patches(directory, k, objs):
    for entry in k.get("patches") or []:
        unknown = set(entry) - {"path", "patch", "target"}
        if unknown:
            raise KustomizeError("%s: patch field(s) not supported: %s" % (directory, sorted(unknown)))
        if "path" in entry:
            docs = _load_yaml_docs(_inside(directory, os.path.join(directory, entry["path"])))
            src = entry["path"]
        else:
            docs = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
            src = "inline patch"
        if len(docs) != 1:
            raise KustomizeError("%s: %s: one document per patch, please" % (directory, src))
        patch = docs[0]
        target = entry.get("target")
        if target is not None:
            unknown = set(target) - {"kind", "name"}
            if unknown:
                raise KustomizeError("%s: target field(s) not supported: %s" % (directory, sorted(unknown)))
            match = [i for i, o in enumerate(objs)
                     if o.get("kind") == target.get("kind")
                     and ("name" not in target or o["metadata"]["name"] == target["name"])]
        else:
            if not isinstance(patch, dict):
                raise KustomizeError("%s: %s: a JSON 6902 patch needs a target" % (directory, src))
            match = [i for i, o in enumerate(objs) if _key(o) == _key(patch)]
        if not match:
            raise KustomizeError("%s: %s matches no object" % (directory, src))
        for i in match:
            if isinstance(patch, list):
                objs[i] = json6902(objs[i], patch)
            else:
                body = {f: v for f, v in patch.items() if f not in ("apiVersion", "kind", "metadata")}
                md = {f: v for f, v in (patch.get("metadata") or {}).items() if f != "name"}
                merged = strategic_merge(objs[i], body)
                if md:
                    merged["metadata"] = strategic_merge(merged["metadata"], md)
                objs[i] = merged


# ---- transformers ------------------------------------------------------------

def _pod_specs(obj):
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        yield spec
    elif obj.get("kind") == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif obj.get("kind") in WORKLOAD_KINDS:
        yield spec["template"]["spec"]


def _containers(podspec):
    for field in ("initContainers", "containers"):
        for c in podspec.get(field) or []:
            yield c


def _split_image(image):
    """'repo/name:tag@sha256:..' -> (name, tag, digest); tag/digest may be None."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1:]
    return image, tag, digest


def _apply_images(k, objs):
    for rule in k.get("images") or []:
        unknown = set(rule) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise KustomizeError("images field(s) not supported: %s" % sorted(unknown))
        for obj in objs:
            for ps in _pod_specs(obj):
                for c in _containers(ps):
                    name, tag, digest = _split_image(c["image"])
                    if name != rule["name"]:
                        continue
                    name = rule.get("newName", name)
                    if "digest" in rule:
                        tag, digest = None, rule["digest"]
                    elif "newTag" in rule:
                        tag, digest = str(rule["newTag"]), None
                    c["image"] = name + (":" + tag if tag else "") + ("@" + digest if digest else "")


def _apply_replicas(k, objs):
    for rule in k.get("replicas") or []:
        hits = [o for o in objs if o.get("kind") in REPLICA_KINDS and o["metadata"]["name"] == rule["name"]]
        if not hits:
            raise KustomizeError("replicas: no workload named %r" % rule["name"])
        for o in hits:
            o["spec"]["replicas"] = int(rule["count"])


def _apply_namespace(k, objs):
    ns = k.get("namespace")
    if not ns:
        return
    for o in objs:
        if o.get("kind") not in CLUSTER_SCOPED:
            o["metadata"]["namespace"] = ns


# ---- the build -----------------------------------------------------------------

def _build(directory, seen):
    directory = os.path.realpath(directory)
    if directory in seen:
        raise KustomizeError("%s: kustomization cycle" % directory)
    seen = seen | {directory}
    kfile = _kustomization_file(directory)
    with open(kfile, encoding="utf-8") as f:
        k = yaml.safe_load(f) or {}
    unknown = set(k) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError("%s: not supported by tests/deploy/kustomize.py: %s"
                             % (kfile, ", ".join(sorted(unknown))))
    objs = []
    for res in k.get("resources") or []:
        if "://" in res or res.startswith("github.com/"):
            raise KustomizeError("%s: remote resource %s is not supported" % (kfile, res))
        path = os.path.join(directory, res)
        if os.path.isdir(path):
            objs.extend(_build(path, seen))
        else:
            objs.extend(copy.deepcopy(d) for d in _load_yaml_docs(_inside(directory, path)))
    _apply_generators(directory, k, objs)
    _apply_patches(directory, k, objs)
    _apply_namespace(k, objs)
    _apply_replicas(k, objs)
    _apply_images(k, objs)
    keys = [(o.get("kind"), o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    dup = {x for x in keys if keys.count(x) > 1}
    if dup:
        raise KustomizeError("%s: duplicate objects %s" % (kfile, sorted(map(str, dup))))
    return objs


def name_hash(obj):
    """kustomize's name suffix for a generated ConfigMap or Secret: the first
    ten hex digits of the SHA-256 of a canonical JSON encoding (Go's
    encoding/json: sorted keys, no spaces, <, > and & escaped) of kind, name,
    data (and type for a Secret), with 0 1 3 a e replaced by g h k m t.
    The name in that encoding is always "": kustomize 5 looks it up under a
    path that never matches (seen with kubectl 1.32's kustomize 5.5.0, and
    checked by check_k8s.py wherever kubectl exists)."""
    if obj["kind"] == "ConfigMap":
        doc = {"kind": "ConfigMap", "name": "", "data": obj.get("data") or {}}
    else:
        doc = {"kind": "Secret", "type": obj.get("type", "Opaque"),
               "name": "", "data": obj.get("data") or {}}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    hexdigest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return "".join({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}.get(c, c)
                   for c in hexdigest[:10])


def _rename_refs(objs, renames):
    """Points pod specs at the hashed names (renames: (kind, ns, old) -> new)."""
    def ren(kind, ns, name):
        return renames.get((kind, ns, name), name)

    for o in objs:
        ns = o["metadata"].get("namespace")
        for ps in _pod_specs(o):
            for v in ps.get("volumes") or []:
                if "configMap" in v:
                    v["configMap"]["name"] = ren("ConfigMap", ns, v["configMap"]["name"])
                if "secret" in v:
                    v["secret"]["secretName"] = ren("Secret", ns, v["secret"]["secretName"])
                for s in (v.get("projected") or {}).get("sources") or []:
                    if "configMap" in s:
                        s["configMap"]["name"] = ren("ConfigMap", ns, s["configMap"]["name"])
                    if "secret" in s:
                        s["secret"]["name"] = ren("Secret", ns, s["secret"]["name"])
            for ips in ps.get("imagePullSecrets") or []:
                ips["name"] = ren("Secret", ns, ips["name"])
            for c in _containers(ps):
                for e in c.get("envFrom") or []:
                    if "configMapRef" in e:
                        e["configMapRef"]["name"] = ren("ConfigMap", ns, e["configMapRef"]["name"])
                    if "secretRef" in e:
                        e["secretRef"]["name"] = ren("Secret", ns, e["secretRef"]["name"])
                for e in c.get("env") or []:
                    vf = e.get("valueFrom") or {}
                    if "configMapKeyRef" in vf:
                        vf["configMapKeyRef"]["name"] = ren("ConfigMap", ns, vf["configMapKeyRef"]["name"])
                    if "secretKeyRef" in vf:
                        vf["secretKeyRef"]["name"] = ren("Secret", ns, vf["secretKeyRef"]["name"])


def render(directory):
    """Returns the list of objects the kustomization in directory renders."""
    objs = _build(directory, frozenset())
    renames = {}
    for o in objs:
        if o.pop(_GEN, False):
            old = o["metadata"]["name"]
            new = "%s-%s" % (old, name_hash(o))
            renames[(o["kind"], o["metadata"].get("namespace"), old)] = new
            o["metadata"]["name"] = new
    _rename_refs(objs, renames)
    return objs


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: kustomize.py DIR\n")
        return 2
    try:
        objs = render(argv[1])
    except KustomizeError as e:
        sys.stderr.write("kustomize.py: %s\n" % e)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objs, sort_keys=True, default_flow_style=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
