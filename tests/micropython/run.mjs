// Run a Python script under real MicroPython 1.27 (WebAssembly port) with tincoso's
// portable packages copied into its filesystem.
//
//   node tests/micropython/run.mjs --repo DIR [--heap BYTES] SCRIPT.py [ARG ...]
//
// Copies every .py file of protocols/ and agent/core/ (the portable code) into /lib,
// runs SCRIPT.py with the global SCRIPT_ARGS = [SCRIPT, ARG ...], and exits 1 if it raises.
import fs from "node:fs";
import path from "node:path";
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const argv = process.argv.slice(2);
let repo = process.cwd();
let heap = 4 * 1024 * 1024;
while (argv.length && argv[0].startsWith("--")) {
  const flag = argv.shift();
  if (flag === "--repo") repo = argv.shift();
  else if (flag === "--heap") heap = parseInt(argv.shift(), 10);
  else { console.error(`unknown flag ${flag}`); process.exit(2); }
}
const script = argv.shift();
if (!script) { console.error("usage: run.mjs [--repo DIR] [--heap BYTES] SCRIPT.py [ARG ...]"); process.exit(2); }

const mp = await loadMicroPython({
  heapsize: heap,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function copyPackage(rel) {
  const src = path.join(repo, rel);
  if (!fs.existsSync(src)) return;
  let dst = "/lib";
  for (const part of rel.split("/")) {
    dst += "/" + part;
    try { mp.FS.mkdir(dst); } catch (e) { /* exists */ }
  }
  for (const name of fs.readdirSync(src)) {
    if (name.endsWith(".py")) mp.FS.writeFile(`${dst}/${name}`, fs.readFileSync(path.join(src, name), "utf8"));
  }
  // A package's parent needs an __init__.py too (agent/ for agent/core/).
  const parent = rel.split("/").slice(0, -1).join("/");
  if (parent) {
    const init = `/lib/${parent}/__init__.py`;
    try { mp.FS.stat(init); } catch (e) { mp.FS.writeFile(init, ""); }
  }
}
try { mp.FS.mkdir("/lib"); } catch (e) { /* exists */ }
for (const rel of ["protocols", "agent/core"]) copyPackage(rel);
// The tiny test runner the MicroPython test scripts use.
mp.FS.writeFile("/lib/mptest.py", fs.readFileSync(new URL("./mptest.py", import.meta.url), "utf8"));
try { mp.FS.mkdir("/work"); } catch (e) { /* exists */ }

const code = fs.readFileSync(script, "utf8");
mp.FS.writeFile("/work/__script__.py", code);
const args = JSON.stringify([script, ...argv]);
try {
  mp.runPython(`import sys\nsys.path.insert(0, "/lib")\nSCRIPT_ARGS = ${args}\n`);
  mp.runPython(code);
} catch (error) {
  if (error.name !== "PythonError") throw error;
  if (error.type === "SystemExit") {
    const m = /SystemExit: (\d+)/.exec(error.message);
    process.exit(m ? parseInt(m[1], 10) : 0);
  }
  process.stderr.write(error.message + "\n");
  process.exit(1);
}
