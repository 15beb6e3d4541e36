// The lint rules that keep the house (see ../shared/ARCHITECTURE.md, "Processes and layers").
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const noElectron = {
  paths: [{ name: 'electron', message: 'electron/core and shared never import electron: only electron/main.ts and preload.ts may.' }],
  patterns: [{ group: ['electron/*'], message: 'electron/core and shared never import electron.' }],
};

// Browser globals that must not appear in shared/ (pure TypeScript, runs in both processes).
const domGlobals = ['window', 'document', 'navigator', 'localStorage', 'sessionStorage', 'location', 'HTMLElement', 'Element', 'Node', 'Event', 'EventTarget', 'CustomEvent', 'fetch', 'XMLHttpRequest', 'WebSocket', 'requestAnimationFrame', 'alert', 'Blob', 'File', 'FileReader']
  .map((name) => ({ name, message: 'shared/ is pure TypeScript: no DOM globals.' }));
const nodeGlobals = ['process', 'Buffer', 'require', '__dirname', '__filename', 'global', 'setImmediate']
  .map((name) => ({ name, message: 'shared/ is pure TypeScript: no Node globals.' }));

export default tseslint.config(
  { ignores: ['dist/**', 'release/**', 'node_modules/**', 'assets/**', 'test-results/**', 'playwright-report/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  {
    files: ['electron/core/**'],
    rules: { 'no-restricted-imports': ['error', noElectron] },
  },
  {
    files: ['shared/**'],
    languageOptions: { globals: {} },
    rules: {
      'no-restricted-imports': ['error', {
        paths: noElectron.paths,
        patterns: [
          ...noElectron.patterns,
          { regex: '^node:', message: 'shared/ is pure TypeScript: no node: imports.' },
          { group: ['fs', 'path', 'os', 'net', 'child_process', 'crypto', 'stream', 'util', 'events'], message: 'shared/ is pure TypeScript: no Node built-ins.' },
        ],
      }],
      'no-restricted-globals': ['error', ...domGlobals, ...nodeGlobals],
    },
  },
  {
    files: ['renderer/**'],
    languageOptions: { globals: { ...globals.browser } },
    rules: {
      'no-restricted-imports': ['error', {
        paths: noElectron.paths,
        patterns: [{ regex: '^node:', message: 'The renderer has no Node: talk to window.ferry.' }],
      }],
    },
  },
);
