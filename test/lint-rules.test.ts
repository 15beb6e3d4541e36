import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

/** The house rules must actually fire: feed eslint offending code under each path. */
describe('lint rules that keep the house', () => {
  const eslint = new ESLint({ cwd: process.cwd() });
  const lint = async (filePath: string, code: string) => {
    const [res] = await eslint.lintText(code, { filePath });
    return res!.messages.map((m) => `${m.ruleId}: ${m.message}`);
  };

  it('forbids electron under electron/core', async () => {
    const msgs = await lint('electron/core/x.ts', "import { app } from 'electron';\nexport const a = app;\n");
    expect(msgs.join('\n')).toMatch(/no-restricted-imports: .*never import electron/);
  });

  it('allows electron in electron/main.ts', async () => {
    const msgs = await lint('electron/main.ts', "import { app } from 'electron';\nexport const a = app;\n");
    expect(msgs.filter((m) => m.startsWith('no-restricted-imports'))).toEqual([]);
  });

  it('forbids electron, node: imports, Node built-ins and DOM/Node globals in shared/', async () => {
    expect((await lint('shared/x.ts', "import { app } from 'electron';\nexport const a = app;\n")).join()).toMatch(/never import electron/);
    expect((await lint('shared/x.ts', "import fs from 'node:fs';\nexport const a = fs;\n")).join()).toMatch(/no node: imports/);
    expect((await lint('shared/x.ts', "import fs from 'fs';\nexport const a = fs;\n")).join()).toMatch(/no Node built-ins/);
    expect((await lint('shared/x.ts', 'export const w = window.innerWidth;\n')).join()).toMatch(/no-restricted-globals: .*no DOM globals/);
    expect((await lint('shared/x.ts', 'export const d = document.title;\n')).join()).toMatch(/no DOM globals/);
    expect((await lint('shared/x.ts', 'export const p = process.pid;\n')).join()).toMatch(/no Node globals/);
  });

  it('accepts pure TypeScript in shared/', async () => {
    expect(await lint('shared/x.ts', 'export const sum = (a: number, b: number): number => a + b;\n')).toEqual([]);
  });
});
