// Every TypeScript example in the package's README type-checks and runs, in order, as one module
// against the live server (imports of the package point at its sources).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

test("the README examples type-check and run", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 4, "the README's examples went missing");
  const source = blocks.join("\n").replaceAll('from "@clerk-index/client"', 'from "../src/index.js"');
  const scratch = mkdtempSync(join(root, "test", ".readme-"));
  const file = join(scratch, "examples.ts");
  // One directory down from test/, so "../src" must become "../../src".
  writeFileSync(file, source.replaceAll('"../src/index.js"', '"../../src/index.js"'));
  try {
    const tsc = join(root, "node_modules", ".bin", "tsc");
    execFileSync(
      tsc,
      ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck", file],
      { cwd: root, stdio: "inherit" },
    );
    execFileSync(process.execPath, ["--import", "tsx", file], { cwd: scratch, stdio: "inherit", timeout: 120_000 });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});
