// jupyterlab_sanitize.mjs - runs HTML through JupyterLab's own Sanitizer (the
// one untrusted outputs get), from @jupyterlab/apputils installed beside this
// file. Reads a JSON list of HTML strings on stdin, writes the JSON list of
// sanitized strings on stdout. Used by test_report_sanitized.py.
import { Sanitizer } from '@jupyterlab/apputils/lib/sanitizer.js';
import fs from 'fs';

const sanitizer = new Sanitizer();
const dirty = JSON.parse(fs.readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(dirty.map((html) => sanitizer.sanitize(html))));
