// Regenerates tests/rendering/oracle/*.json: every conformance case run through the pinned
// handlebars.js (see package.json), so the Python tests compare against handlebars.js itself.
//
//   cd tools/render-oracle && npm ci && node oracle.js
//
// Inputs: tests/rendering/spec/{handlebars,mustache}/*.json (vendored spec data) and
// tests/rendering/corpus/handlebars.json (our own corpus). Helper and data functions in the spec
// data ("!code" objects) are test fixtures from the handlebars.js suite; they are evaluated here,
// in the oracle only.
'use strict';
const fs = require('fs');
const path = require('path');
const Handlebars = require('handlebars');

const root = path.resolve(__dirname, '..', '..', 'tests', 'rendering');
// ORACLE_OUT lets the freshness test write elsewhere and compare.
const outDir = process.env.ORACLE_OUT || path.join(root, 'oracle');

function revive(value) {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === 'object') {
    if (value['!code']) {
      // eslint-disable-next-line no-eval
      return eval('(' + value.javascript + ')');
    }
    const out = {};
    for (const key of Object.keys(value)) out[key] = revive(value[key]);
    return out;
  }
  return value;
}

function run(testCase) {
  const env = Handlebars.create();
  const compileOptions = Object.assign({}, revive(testCase.compileOptions || {}));
  const runtimeOptions = Object.assign({}, revive(testCase.runtimeOptions || {}));
  const helpers = revive(testCase.helpers || {});
  const partials = revive(testCase.partials || {});
  const decorators = revive(testCase.decorators || {});
  try {
    const template = env.compile(testCase.template, compileOptions);
    const output = template(revive(testCase.data), Object.assign(runtimeOptions, {
      helpers: Object.assign({}, helpers, runtimeOptions.helpers || {}),
      partials: Object.assign({}, partials, runtimeOptions.partials || {}),
      decorators: Object.assign({}, decorators, runtimeOptions.decorators || {}),
    }));
    return { output: String(output) };
  } catch (error) {
    return { error: String(error && error.message ? error.message : error).split('\n')[0] };
  }
}

function write(group, results) {
  fs.writeFileSync(path.join(outDir, group + '.json'), JSON.stringify({
    generator: 'handlebars ' + Handlebars.VERSION,
    cases: results,
  }, null, 1) + '\n');
  console.log(group + ': ' + results.length + ' cases');
}

fs.mkdirSync(outDir, { recursive: true });

for (const file of fs.readdirSync(path.join(root, 'spec', 'handlebars')).sort()) {
  if (!file.endsWith('.json')) continue;
  const cases = JSON.parse(fs.readFileSync(path.join(root, 'spec', 'handlebars', file), 'utf8'));
  write('handlebars-' + file.replace('.json', ''), cases.map((c, index) => Object.assign({ index }, run(c))));
}

for (const file of fs.readdirSync(path.join(root, 'spec', 'mustache')).sort()) {
  if (!file.endsWith('.json')) continue;
  const spec = JSON.parse(fs.readFileSync(path.join(root, 'spec', 'mustache', file), 'utf8'));
  write('mustache-' + file.replace('.json', ''), spec.tests.map((c, index) => Object.assign({ index }, run(c))));
}

const corpusFile = path.join(root, 'corpus', 'handlebars.json');
if (fs.existsSync(corpusFile)) {
  const corpus = JSON.parse(fs.readFileSync(corpusFile, 'utf8'));
  write('corpus-handlebars', corpus.map((c, index) => Object.assign({ index, name: c.name }, run(c))));
}
