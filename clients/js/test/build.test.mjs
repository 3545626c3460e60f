// The generated files: dist/turnpike.js must be what the bundle script builds from src/ now
// (a stale bundle fails), and index.d.ts must type-check a small typed usage file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

test("dist/turnpike.js is up to date with src/ (npm run bundle)", () => {
  const dir = mkdtempSync(join(tmpdir(), "turnpike-bundle-"));
  try {
    const out = join(dir, "turnpike.js");
    execFileSync(process.execPath, [join(root, "scripts/bundle.mjs"), out], { stdio: "inherit" });
    const fresh = readFileSync(out, "utf8");
    const committed = readFileSync(join(root, "dist/turnpike.js"), "utf8");
    assert.ok(fresh.length > 10000);
    assert.ok(committed === fresh, "dist/turnpike.js is stale: run `npm run bundle` in clients/js");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the bundle is one self-contained ES module exporting connect", async () => {
  const text = readFileSync(join(root, "dist/turnpike.js"), "utf8");
  assert.ok(!/^\s*import\s/m.test(text), "no import statements");
  assert.ok(text.includes("nacl"), "tweetnacl is inlined");
  const mod = await import(join(root, "dist/turnpike.js"));
  assert.equal(typeof mod.connect, "function");
  assert.equal(typeof mod.TurnpikeError, "function");
});

test("index.d.ts type-checks a typed usage file (tsc --noEmit)", () => {
  const tsc = join(root, "node_modules/typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "test/types/tsconfig.json")], { stdio: "inherit" });
});
