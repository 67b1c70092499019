#!/usr/bin/env node
// Validate binary glTF files with the Khronos glTF validator; print one JSON report per file.
// Usage: node scripts/validate-gltf.js FILE.glb [...]   (exit status 1 when any file has errors)
'use strict';
const fs = require('fs');
const path = require('path');
const validator = require(path.join(__dirname, '..', 'node_modules', 'gltf-validator'));

async function main(files) {
  let failed = false;
  for (const file of files) {
    const bytes = new Uint8Array(fs.readFileSync(file));
    const report = await validator.validateBytes(bytes, { maxIssues: 100 });
    const { numErrors, numWarnings, numInfos, numHints } = report.issues;
    failed = failed || numErrors > 0;
    process.stdout.write(JSON.stringify({ file, numErrors, numWarnings, numInfos, numHints,
      messages: report.issues.messages }) + '\n');
  }
  process.exit(failed ? 1 : 0);
}

main(process.argv.slice(2)).catch((error) => { console.error(error); process.exit(2); });
