// dump_general_category.mjs — write tools/unicode/DerivedGeneralCategory-15.1.0.txt
// (the input of tools/gen_unicode_tables.py) from the npm package
// @unicode/unicode-15.1.0, in the layout of the UCD's
// extracted/DerivedGeneralCategory.txt.  By hand, when the table changes:
//
//   npm install --prefix /some/dir @unicode/unicode-15.1.0@2.0.7
//   node tools/unicode/dump_general_category.mjs /some/dir/node_modules \
//       > tools/unicode/DerivedGeneralCategory-15.1.0.txt
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const names = {
  Lu: 'Uppercase_Letter', Ll: 'Lowercase_Letter', Lt: 'Titlecase_Letter', Lm: 'Modifier_Letter',
  Lo: 'Other_Letter', Mn: 'Nonspacing_Mark', Mc: 'Spacing_Mark', Me: 'Enclosing_Mark',
  Nd: 'Decimal_Number', Nl: 'Letter_Number', No: 'Other_Number', Pc: 'Connector_Punctuation',
  Pd: 'Dash_Punctuation', Ps: 'Open_Punctuation', Pe: 'Close_Punctuation',
  Pi: 'Initial_Punctuation', Pf: 'Final_Punctuation', Po: 'Other_Punctuation',
  Sm: 'Math_Symbol', Sc: 'Currency_Symbol', Sk: 'Modifier_Symbol', So: 'Other_Symbol',
  Zs: 'Space_Separator', Zl: 'Line_Separator', Zp: 'Paragraph_Separator', Cc: 'Control',
  Cf: 'Format', Cs: 'Surrogate', Co: 'Private_Use',
};
const root = path.join(process.argv[2] ?? 'node_modules', '@unicode', 'unicode-15.1.0');
const hex = (n) => n.toString(16).toUpperCase().padStart(4, '0');

let out = `# DerivedGeneralCategory-15.1.0.txt
#
# The General_Category of every code point in Unicode 15.1.0, the version of
# llama.cpp's src/unicode-data.cpp (whose classes, L N P S M Z C Cn, agree
# with this file for every code point).  Layout of the UCD's
# extracted/DerivedGeneralCategory.txt
# (range ; category), unlisted code points are Cn.  Written from the npm
# package @unicode/unicode-15.1.0@2.0.7 (General_Category/*/ranges.mjs), as
# that is the 15.1 data this machine's registries offer.  Input of
# tools/gen_unicode_tables.py.  Unicode data: Copyright (c) 1991-2023
# Unicode, Inc., under the Unicode License v3 (https://www.unicode.org/license.txt).
#
`;
for (const [category, long] of Object.entries(names)) {
  const file = path.join(root, 'General_Category', long, 'ranges.mjs');
  const ranges = (await import(pathToFileURL(file).href)).default;
  for (const r of ranges) {
    const span = r.end - r.begin === 1 ? hex(r.begin) : `${hex(r.begin)}..${hex(r.end - 1)}`;
    out += `${span.padEnd(14)}; ${category}\n`;
  }
}
process.stdout.write(out);
