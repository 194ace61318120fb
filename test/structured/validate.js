// validate.js — checks constrained outputs with ajv, a JSON Schema
// validator independent of pg_infer.  Input: JSON lines {"model", "schema",
// "text"} (test_structured writes them to $PGI_STRUCTURED_OUT).  Prints a
// TAP line per model and exits 1 when any text fails to parse or validate.
const fs = require('fs');
const Ajv = require('ajv');
const ajv = new Ajv({strict: false, allErrors: true});
const lines = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(l => l.length > 0);
const per = {};
let failed = 0;
for (const line of lines) {
    const row = JSON.parse(line);
    const m = per[row.model] = per[row.model] || {n: 0, ok: 0};
    m.n++;
    let value;
    try {
        value = JSON.parse(row.text);
    } catch (e) {
        console.log(`# ${row.model}: does not parse: ${row.text}`);
        failed++;
        continue;
    }
    const validate = ajv.compile(row.schema);
    if (validate(value))
        m.ok++;
    else {
        console.log(`# ${row.model}: ${JSON.stringify(validate.errors)} for ${row.text}`);
        failed++;
    }
}
let k = 0;
for (const [model, m] of Object.entries(per))
    console.log(`${m.ok === m.n ? 'ok' : 'not ok'} ${++k} - ajv: ${m.ok} of ${m.n} ${model} outputs parse and validate`);
console.log(`1..${k}`);
process.exit(failed || k === 0 ? 1 : 0);
