// k8s_schema.js: validates Kubernetes objects offline, two ways.
//
//   node k8s_schema.js OBJECTS.json
//
// OBJECTS.json is [{"id": "...", "object": {...}}, ...] (check_k8s.py writes
// it). Prints one JSON document: {"results": [{"id", "errors": [...]}]}; an
// object is valid when its errors list is empty. Exit status 0 unless the
// input could not be read.
//
// 1. Schema: kubernetes-models ships, for every built-in apiVersion/kind,
//    a validator compiled (ajv) from the Kubernetes OpenAPI document: types,
//    required fields, enums, formats (int32, quantities, ...).
// 2. Unknown fields: those validators accept fields the API does not have
//    (`readinesProbe`, `replica`), as the API server does silently, so the
//    object is also type-checked as a TypeScript object literal against the
//    package's interfaces, where any unknown field is an error.
// An apiVersion/kind the package does not know is an error, never a skip.
// Not here: reading the manifests, policies (check_k8s.py).

"use strict";

const fs = require("fs");
const path = require("path");
const ts = require("typescript");

function modulePath(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) {
    return null;
  }
  // "v1" -> kubernetes-models/v1/Kind; "apps/v1" -> kubernetes-models/apps/v1/Kind
  const rel = `kubernetes-models/${apiVersion}/${kind}`;
  try {
    require.resolve(rel);
    return rel;
  } catch (e) {
    return null;
  }
}

function schemaErrors(mod, kind, obj) {
  const Model = require(mod)[kind];
  if (typeof Model !== "function") {
    return [`${mod} has no model ${kind}`];
  }
  try {
    new Model(obj).validate();
    return [];
  } catch (e) {
    return [`schema: ${e.message}`];
  }
}

// One TypeScript program for all objects: `const oN: IKind = <object>;`.
function unknownFieldErrors(items) {
  const errors = items.map(() => []);
  const lines = [];
  const starts = [];
  items.forEach((it, i) => {
    if (!it.mod) {
      starts.push(-1);
      return;
    }
    lines.push(`import type { I${it.kind} as T${i} } from ${JSON.stringify(it.mod)};`);
  });
  items.forEach((it, i) => {
    if (!it.mod) {
      return;
    }
    starts[i] = lines.length;
    const body = JSON.stringify(it.object, null, 1).split("\n");
    body[0] = `const o${i}: T${i} = ${body[0]}`;
    body[body.length - 1] += ";";
    lines.push(...body);
  });
  const source = lines.join("\n") + "\nexport {};\n";
  const fileName = path.join(__dirname, "__rendered_objects__.ts");
  const options = {
    noEmit: true,
    strict: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile;
  host.getSourceFile = (f, lang, ...rest) =>
    f === fileName ? ts.createSourceFile(f, source, lang, true) : getSourceFile.call(host, f, lang, ...rest);
  const fileExists = host.fileExists;
  host.fileExists = (f) => f === fileName || fileExists.call(host, f);
  const program = ts.createProgram([fileName], options, host);
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, " ");
    if (!d.file || d.file.fileName !== fileName) {
      // A broken install, not a broken manifest: every object fails.
      errors.forEach((e) => e.push(`typescript: ${msg}`));
      continue;
    }
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    let owner = -1;
    starts.forEach((s, i) => {
      if (s >= 0 && s <= line) {
        owner = i;
      }
    });
    const text = source.split("\n")[line].trim();
    if (owner >= 0) {
      errors[owner].push(`unknown field or wrong type: ${msg} (at: ${text})`);
    } else {
      errors.forEach((e) => e.push(`typescript: ${msg} (at: ${text})`));
    }
  }
  return errors;
}

function main(argv) {
  if (argv.length !== 1) {
    process.stderr.write("usage: node k8s_schema.js OBJECTS.json\n");
    return 2;
  }
  const input = JSON.parse(fs.readFileSync(argv[0], "utf8"));
  const items = input.map((x) => {
    const obj = x.object || {};
    const mod = modulePath(obj.apiVersion, obj.kind);
    return { id: x.id, object: obj, kind: obj.kind, mod: mod };
  });
  const results = items.map((it) => ({
    id: it.id,
    errors: it.mod
      ? schemaErrors(it.mod, it.kind, it.object)
      : [`no schema for apiVersion ${it.object.apiVersion} kind ${it.object.kind}`],
  }));
  const extra = unknownFieldErrors(items);
  results.forEach((r, i) => r.errors.push(...extra[i]));
  process.stdout.write(JSON.stringify({ results: results }) + "\n");
  return 0;
}

process.exitCode = main(process.argv.slice(2));
