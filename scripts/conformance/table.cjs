// Prints the table of a scripts/conformance.sh run: one row per scenario and revision, one
// column per mode. Run with NODE_PATH naming the node_modules that holds the suite.
//
//   node table.cjs <results dir> <baseline dir> <mode>...
//
// A scenario passes when none of its checks failed or warned (the suite's baseline counts a
// warning as a failure; skips are not).
// "n/a" marks a scenario the baseline lists (it needs the suite's fixtures); "pass (n/a: …)"
// one whose only failures are checks the baseline lists. "not scored" scenarios (extensions,
// pending ones) are run by the suite for visibility and never decide the result.
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

const [results, baselines, ...modes] = process.argv.slice(2);
const suite = path.dirname(require.resolve('@modelcontextprotocol/conformance/package.json'));
const revisions = ['2025-11-25', '2026-07-28'];

function scenarios(dir) {
  // server-<scenario>-<timestamp> → checks
  const out = new Map();
  if (!fs.existsSync(dir)) return out;
  for (const entry of fs.readdirSync(dir)) {
    const m = entry.match(/^server-(.+)-\d{4}-\d\d-\d\dT/);
    if (!m) continue;
    const file = path.join(dir, entry, 'checks.json');
    if (fs.existsSync(file)) out.set(m[1], JSON.parse(fs.readFileSync(file, 'utf8')));
  }
  return out;
}

const rows = [];
let width = 8;
for (const revision of revisions) {
  const required = YAML.parse(fs.readFileSync(path.join(suite, 'requirements', `${revision}.yaml`), 'utf8'));
  const notScored = new Map((required.not_scored || []).filter((e) => e.leg === 'server').map((e) => [e.scenario, e.reason]));
  const baseline = YAML.parse(fs.readFileSync(path.join(baselines, `${revision}.yml`), 'utf8')).server || [];
  const whole = new Set(baseline.filter((e) => !e.includes(':')));
  const checks = new Set(baseline.filter((e) => e.includes(':')));
  const byMode = modes.map((mode) => scenarios(path.join(results, mode, revision)));
  const names = [...new Set(byMode.flatMap((m) => [...m.keys()]))];
  const order = (n) => (required.server.includes(n) ? required.server.indexOf(n) : 1000);
  names.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
  for (const name of names) {
    width = Math.max(width, name.length);
    const cells = byMode.map((m) => {
      const list = m.get(name);
      if (!list) return 'not run';
      const failed = list.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING');
      const excused = failed.filter((c) => checks.has(`${name}:${c.id}`));
      let verdict;
      if (whole.has(name)) verdict = failed.length ? 'n/a' : 'PASS (listed as n/a: stale)';
      else if (failed.length === 0) verdict = 'pass';
      else if (excused.length === failed.length) verdict = `pass (n/a: ${excused.length} fixture check${excused.length > 1 ? 's' : ''})`;
      else verdict = `FAIL (${failed.filter((c) => !excused.includes(c)).map((c) => c.id).join(', ')})`;
      if (notScored.has(name)) verdict = `not scored, ${notScored.get(name)}: ${failed.length ? 'fails' : 'passes'}`;
      return verdict;
    });
    rows.push([revision, name, ...cells]);
  }
}
const header = ['revision', 'scenario', ...modes];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ');
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
