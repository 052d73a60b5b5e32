// Times handlebars.js on the templates and data given as JSON on stdin:
//   {"templates": ["...", ...], "data": {...}, "renders": N}
// One "render" renders every template once. Prints {"renders_per_second": ...} on stdout.
'use strict';
const Handlebars = require('handlebars');

let input = '';
process.stdin.on('data', chunk => { input += chunk; });
process.stdin.on('end', () => {
  const job = JSON.parse(input);
  const templates = job.templates.map(source => Handlebars.compile(source));
  const once = () => { let size = 0; for (const t of templates) size += t(job.data).length; return size; };
  for (let i = 0; i < Math.min(job.renders, 500); i++) once();  // let the JIT settle
  const start = process.hrtime.bigint();
  for (let i = 0; i < job.renders; i++) once();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(JSON.stringify({ renders_per_second: job.renders / seconds, version: Handlebars.VERSION }) + '\n');
});
