// Compile every contracts/*.sol with solc's standard-JSON interface (solc from npm, pinned in
// tools/package.json) and print {"<Name>": {"abi": [...], "bytecode": "0x..."}} as JSON.
// Called by contracts/compile.py; NODE_PATH points at .tools/node_modules.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const dir = process.argv[2];
const sources = {};
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(dir, file), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
  process.exit(1);
}
const result = { compiler: solc.version(), contracts: {} };
for (const file of Object.keys(output.contracts).sort()) {
  for (const [name, artifact] of Object.entries(output.contracts[file])) {
    result.contracts[name] = { source: file, abi: artifact.abi, bytecode: "0x" + artifact.evm.bytecode.object };
  }
}
process.stdout.write(JSON.stringify(result));
