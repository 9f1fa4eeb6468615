// The declarations: tether.d.ts compiles with the TypeScript compiler, an
// application written against it (usage.ts) type-checks, its wire types are
// the ones docs/protocol.schema.json declares (generated here from the schema
// and compared by the compiler), and every export of tether.js is declared.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tether from '../tether.js';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const schema = JSON.parse(readFileSync(here('../../../docs/protocol.schema.json'), 'utf8'));

/** The TypeScript type for a JSON Schema node (the subset the schema uses). */
function typeOf(node) {
  if (node.$ref) return node.$ref.replace('#/$defs/', 'Schema');
  if (node.anyOf) return node.anyOf.map(typeOf).join(' | ');
  if (node.const !== undefined) return JSON.stringify(node.const);
  if (node.type === undefined) return 'unknown';
  const types = Array.isArray(node.type) ? node.type : [node.type];
  return types
    .map((type) => {
      switch (type) {
        case 'string':
          return 'string';
        case 'integer':
        case 'number':
          return 'number';
        case 'boolean':
          return 'boolean';
        case 'null':
          return 'null';
        case 'object':
          if (node.properties) return objectOf(node);
          return `{ [key: string]: ${node.additionalProperties ? typeOf(node.additionalProperties) : 'unknown'} }`;
        default:
          throw new Error(`no TypeScript type for ${type}`);
      }
    })
    .join(' | ');
}

function objectOf(node) {
  const required = new Set(node.required ?? []);
  const fields = Object.entries(node.properties).map(
    ([name, property]) => `${name}${required.has(name) ? '' : '?'}: ${typeOf(property)}`,
  );
  return `{ ${fields.join('; ')} }`;
}

function compile(files, dir) {
  const tsc = here('../node_modules/typescript/bin/tsc');
  const args = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022,dom', ...files];
  try {
    execFileSync(process.execPath, [tsc, ...args], { cwd: dir, encoding: 'utf8' });
  } catch (error) {
    assert.fail(`tsc found errors:\n${error.stdout}${error.stderr}`);
  }
}

test('tether.d.ts and an application using it type-check', () => {
  compile([here('../tether.d.ts'), here('./usage.ts')], here('..'));
});

test('the wire types are the schema\'s', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tether-types-'));
  try {
    const check = [
      `import type { WireRequest, WirePush } from ${JSON.stringify(here('../tether.js'))};`,
      `type SchemaStreamPosition = ${objectOf(schema.$defs.StreamPosition)};`,
      `type SchemaRequest = ${schema.$defs.Request.oneOf.map(objectOf).join(' | ')};`,
      `type SchemaPush = ${schema.$defs.Push.oneOf.map(objectOf).join(' | ')};`,
      // Identical, not merely assignable: a field added, removed or made
      // optional on either side fails.
      'type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;',
      'export const requests: Same<WireRequest, SchemaRequest> = true;',
      'export const pushes: Same<WirePush, SchemaPush> = true;',
    ].join('\n');
    writeFileSync(join(dir, 'check.ts'), check);
    compile([join(dir, 'check.ts')], dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every export of tether.js is declared in tether.d.ts', () => {
  const declarations = readFileSync(here('../tether.d.ts'), 'utf8');
  for (const name of Object.keys(tether)) {
    assert.match(declarations, new RegExp(`export declare (const|class|function) ${name}\\b`), name);
  }
});
